"""Watch an OpenAI chat-completion SSE stream as it passes, without changing or holding it back.

This runs for every chunk of every stream, so it scans bytes instead of parsing each event as JSON:
parsing every event cost the tiny model a quarter of its tokens/s through the gateway. Only the rare
event that carries usage is parsed.
"""

from __future__ import annotations

import json
import re
import time

# A non-empty "content" string: one per event that carries output text. An escaped quote inside the
# text (\") cannot match, since the key must be followed by `"` and `:`.
_CONTENT = re.compile(rb'"content"\s*:\s*"(?!")')
_USAGE = re.compile(rb'"usage"\s*:\s*\{')
# The stream's terminator: the answer is complete once this line has passed.
_DONE = re.compile(rb"^data: ?\[DONE\]\s*$", re.MULTILINE)


class StreamWatcher:
    """Counts output chunks and reads usage from a byte stream that may split lines anywhere."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.first_token_at: float | None = None
        self.last_token_at: float | None = None
        self.content_chunks = 0
        self.usage: dict | None = None
        self.done = False  # the [DONE] line has passed: whatever happens next, the answer was complete
        self._pending = b""

    def feed(self, data: bytes) -> None:
        complete, newline, rest = (self._pending + data).rpartition(b"\n")
        if not newline:
            self._pending = rest
            return
        self._pending = rest
        found = len(_CONTENT.findall(complete))
        if found:
            now = time.perf_counter()
            if self.first_token_at is None:
                self.first_token_at = now
            self.last_token_at = now
            self.content_chunks += found
        if _USAGE.search(complete):
            self._read_usage(complete)
        if not self.done and _DONE.search(complete):
            self.done = True

    def _read_usage(self, lines: bytes) -> None:
        for line in lines.split(b"\n"):
            if line.startswith(b"data:") and _USAGE.search(line):
                try:
                    usage = json.loads(line[5:]).get("usage")
                except (ValueError, AttributeError):
                    continue
                if isinstance(usage, dict):
                    self.usage = usage

    @property
    def output_tokens(self) -> int:
        if self.usage and isinstance(self.usage.get("completion_tokens"), int):
            return self.usage["completion_tokens"]
        return self.content_chunks  # one token per chunk is what the runtime sends
