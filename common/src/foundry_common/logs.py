"""structlog set-up: one JSON object per line, uvicorn's own logs routed through the same renderer."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable

import structlog


def configure_logging(level: str = "info", fmt: str = "json", quiet: Iterable[str] = ()) -> None:
    """Log at `level` as JSON lines (`fmt="json"`) or for a terminal (`"console"`); the loggers named in
    `quiet` (a service's chatty libraries) log warnings and errors only."""
    shared = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer = structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # uvicorn installs its own handlers unless told otherwise; make its loggers use ours.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    # Each service logs every request once with its context; per-request access lines would only add noise.
    for name in ("uvicorn.access", *quiet):
        logging.getLogger(name).setLevel(logging.WARNING)
