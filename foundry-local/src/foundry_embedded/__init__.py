"""The embedded Foundry Local service: the real runtime in-process, behind a thin gateway."""
