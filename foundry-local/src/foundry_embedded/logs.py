"""structlog set-up: one JSON object per line, uvicorn's own logs routed through the same renderer."""

from __future__ import annotations

import logging
import os
import re
import sys
import threading

import structlog


def configure_logging(level: str = "info", fmt: str = "json") -> None:
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
    # One access line per request is already written by the gateway, with more context.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)


_NATIVE_LINE = re.compile(r"^\[(\w+)\]\s*(.*)$")
_LEVELS = {"trace": "debug", "debug": "debug", "info": "info", "warning": "warning", "error": "error"}


def capture_native_stderr() -> None:
    """The native runtime writes plain `[level] text` lines to file descriptor 2: re-emit each one as a
    JSON event, so that the container log stays one JSON object per line."""
    read_fd, write_fd = os.pipe()
    os.dup2(write_fd, 2)
    os.close(write_fd)
    threading.Thread(target=_relay_native_lines, args=(read_fd,), name="native-log", daemon=True).start()


def _relay_native_lines(read_fd: int) -> None:
    log = structlog.get_logger("foundry_local.native")
    with os.fdopen(read_fd, "r", errors="replace") as lines:
        for raw in lines:
            line = raw.rstrip()
            if not line:
                continue
            match = _NATIVE_LINE.match(line)
            level, text = (match.group(1).lower(), match.group(2)) if match else ("error", line)
            getattr(log, _LEVELS.get(level, "error"))("runtime_log", message=text)
