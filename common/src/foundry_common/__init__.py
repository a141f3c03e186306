"""Shared by the stack's Python services (the embedded gateway, the chat service, the router)."""
