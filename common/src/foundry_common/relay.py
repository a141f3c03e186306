"""Relaying an OpenAI SSE stream from an upstream to a client, as the router and the embedded gateway both do.

The relay forwards bytes, not events: it reads the stream's first event (to fail over or refuse before the client
has anything), then passes whole lines on as they come, and ends a broken stream with one error event of ours.
Only what must be read is read (the first event here, the usage and the end in sse.StreamWatcher).
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator

FIRST_EVENT_LIMIT = 65536  # bytes read for a stream's first event before relaying it as it is

# An event that commits the answer: generated text, a finish, the end, or an error. Until one arrives nothing the
# client could show has been sent, so an upstream that dies before it can be failed over like one that never answered.
_COMMITTING = re.compile(rb'"(?:content|text)"\s*:\s*"(?!")|"finish_reason"\s*:\s*"|\[DONE\]|"error"')


async def first_event(chunks: AsyncIterator[bytes]) -> bytes:
    """The stream up to the end of its first committing event (or its end, or FIRST_EVENT_LIMIT bytes); b"" for a
    stream that ended before sending anything. The iterator's own errors (a cut connection) go to the caller."""
    head = b""
    async for chunk in chunks:
        head += chunk
        complete = max(head.rfind(b"\n\n"), head.rfind(b"\n\r\n")) + 1  # events end with a blank line
        if len(head) >= FIRST_EVENT_LIMIT or _COMMITTING.search(head, 0, complete):
            break
    return head


def stream_error(head: bytes) -> dict | None:
    """The error object of an error event among the stream's first events ({"message": …}), if there is one."""
    for line in head.splitlines():
        if not line.startswith(b"data:") or b'"error"' not in line:
            continue
        try:
            error = json.loads(line[5:]).get("error")
        except (ValueError, AttributeError):
            continue
        if isinstance(error, dict) and error.get("message"):
            return error
        if isinstance(error, str) and error:
            return {"message": error}
    return None


def error_event(message: str, code: str, error_type: str = "server_error") -> bytes:
    """The event that ends a stream that broke after part of the answer: OpenAI's error shape, as one SSE event."""
    event = {"error": {"message": message, "type": error_type, "param": None, "code": code}}
    return f"data: {json.dumps(event)}\n\n".encode()


class WholeLines:
    """Passes a byte stream on in whole lines only. An upstream cut mid-line (killed, its network gone) then never
    leaves half an event for the client, which would run it into the error event that follows (as one line that is
    not JSON); the half line is dropped instead. Costs one `rfind` per chunk when chunks end at line ends, as SSE
    servers send them."""

    __slots__ = ("partial", "sent_tail")

    def __init__(self) -> None:
        self.partial = b""
        self.sent_tail = b"\n\n"  # the last two bytes passed on: does an event of ours start on a fresh one?

    def push(self, data: bytes) -> bytes:
        if self.partial:
            data = self.partial + data
        end = data.rfind(b"\n") + 1
        if end == len(data):  # the usual case: nothing held back
            self.partial = b""
            whole = data
        else:
            whole, self.partial = data[:end], data[end:]
        if whole:
            self.sent_tail = whole[-2:] if len(whole) > 1 else self.sent_tail[-1:] + whole
        return whole

    def then(self, event: bytes) -> bytes:
        """`event` (a whole SSE event of ours) after what was passed on, ending an event left open first."""
        self.partial = b""
        return event if self.sent_tail == b"\n\n" else b"\n" + event

    def rest(self) -> bytes:
        """At the stream's normal end: a last line the upstream sent without its newline, ended."""
        rest, self.partial = self.partial, b""
        if rest:
            self.sent_tail = (self.sent_tail + rest + b"\n")[-2:]
            return rest + b"\n"
        return b""
