"""Serving an ASGI app as the services here do: our JSON logs only (no access lines), and a bounded drain."""

from __future__ import annotations

import uvicorn

# Docker waits 10 s after SIGTERM before it kills: open answers get 5 s to finish.
GRACEFUL_SECONDS = 5


def serve(app: object, host: str, port: int) -> None:
    uvicorn.run(
        app,  # type: ignore[arg-type]
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=GRACEFUL_SECONDS,
    )
