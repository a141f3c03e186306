"""Watch an OpenAI (chat or text) completion SSE stream as it passes, without changing or holding it back.

This runs for every chunk of every stream, so it scans bytes instead of parsing each event as JSON:
parsing every event cost the tiny model a quarter of its tokens/s through the gateway. Only the rare
event that carries usage is parsed.
"""

from __future__ import annotations

import json
import re
import time

# Histogram boundaries for what a stream's watcher measures, as the OTel GenAI semantic conventions advise them:
# request duration and time to first token (seconds), and time per output token after the first (seconds).
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
PER_TOKEN_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5)

# A non-empty "content" (chat) or "text" (text completions) string: one per event that carries output text. An
# escaped quote inside the text (\") cannot match, since the key must be followed by `"` and `:`.
_CONTENT = re.compile(rb'"(?:content|text)"\s*:\s*"(?!")')
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
        if self._pending or not data.endswith(b"\n"):  # a line split across chunks (relays pass whole lines)
            complete, newline, self._pending = (self._pending + data).rpartition(b"\n")
            if not newline:
                return
        else:
            complete = data
        found = len(_CONTENT.findall(complete))
        if found:
            now = time.perf_counter()
            if self.first_token_at is None:
                self.first_token_at = now
            self.last_token_at = now
            self.content_chunks += found
        # Plain byte searches first: the regular expressions run only on the rare chunk that may match.
        if b'"usage"' in complete and _USAGE.search(complete):
            self._read_usage(complete)
        if not self.done and b"[DONE]" in complete and _DONE.search(complete):
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
