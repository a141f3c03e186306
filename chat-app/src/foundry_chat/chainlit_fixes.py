"""Workarounds for Chainlit 2.12 behaviour that hurts users: blocking sleeps, and long messages cutting the line.

`chainlit.Message.__init__` and `chainlit.Step.__init__` call `time.sleep(0.001)`: a blocking sleep on the
event loop, three per user message (the user's message, the on_message step, the reply). With 32
sessions sending at once that stalls every stream for ~100 ms (measured with `scripts/bench chat`).
Those modules use `time` for nothing else, so they get a `time` whose sleep does not block. Timestamps
keep microsecond resolution, so messages still sort in the order they were created.
"""

from __future__ import annotations

import importlib
import types


def remove_blocking_sleeps() -> None:
    no_sleep = types.SimpleNamespace(sleep=lambda seconds: None)
    # By module path: the package's `chainlit.step` attribute is the step decorator, not the module.
    for name in ("chainlit.message", "chainlit.step"):
        importlib.import_module(name).time = no_sleep  # type: ignore[attr-defined]


# Engine.IO closes the connection on a message over its 1 MB default: the page then only says it lost the server.
# A bigger cap lets a too-long message reach the chat, which refuses it in words (MAX_INPUT_CHARS).
MAX_SOCKET_MESSAGE_BYTES = 16 * 2**20


def accept_long_messages() -> None:
    from chainlit.server import sio

    sio.eio.max_http_buffer_size = MAX_SOCKET_MESSAGE_BYTES
