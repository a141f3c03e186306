"""The native runtime's own log lines, re-emitted through structlog (foundry_common.logs sets it up)."""

from __future__ import annotations

import os
import re
import threading

import structlog

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
