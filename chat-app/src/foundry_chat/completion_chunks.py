"""Reading OpenAI chat completion chunks from the event stream's lines.

The OpenAI client's own stream builds a typed model for every chunk (about a quarter of a millisecond
each); at thousands of tokens a second across sessions that is most of this service's CPU. We keep the
client for the request (URL, key, timeouts, HTTP errors) and read the lines ourselves: a JSON parse each.
"""

from __future__ import annotations

import json
from dataclasses import dataclass


class StreamError(Exception):
    """The stream went wrong: the router reported an error in it (`reported`), or sent something unreadable."""

    def __init__(self, message: str, reported: bool = False) -> None:
        super().__init__(message)
        self.reported = reported


@dataclass(frozen=True)
class Chunk:
    token: str = ""
    input_tokens: int | None = None
    output_tokens: int | None = None
    done: bool = False


DONE = Chunk(done=True)


def parse_line(line: str) -> Chunk | None:
    """One line of the event stream: a chunk, the end, or None for lines that carry nothing (comments, blanks)."""
    if not line.startswith("data:"):
        return None
    data = line[5:].strip()
    if data == "[DONE]":
        return DONE
    try:
        event = json.loads(data)
    except ValueError:
        raise StreamError(f"sent a line that is not JSON: {data[:80]!r}") from None
    if not isinstance(event, dict):
        raise StreamError("sent a chunk that is not a JSON object")
    if event.get("error"):
        error = event["error"]
        message = error.get("message") if isinstance(error, dict) else str(error)
        # The router ends a stream that broke after its first byte this way: its message says what failed.
        raise StreamError(str(message or "an error without a message"), reported=True)
    token = ""
    choices = event.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        delta = choices[0].get("delta") or {}
        content = delta.get("content") if isinstance(delta, dict) else None
        token = content if isinstance(content, str) else ""
    usage = event.get("usage")
    if isinstance(usage, dict):
        return Chunk(token, usage.get("prompt_tokens"), usage.get("completion_tokens"))
    return Chunk(token)
