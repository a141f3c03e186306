"""Chainlit chat service for the local Foundry Local stack."""

__version__ = "0.1.0"
