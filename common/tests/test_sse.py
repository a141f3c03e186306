"""StreamWatcher: what the router and the gateway read of an SSE stream as it passes (no processes, no network)."""

from __future__ import annotations

import json

import pytest

from foundry_common.sse import StreamWatcher

pytestmark = pytest.mark.unit


def sse(*events: dict) -> bytes:
    return b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events) + b"data: [DONE]\n\n"


def delta(text: str) -> dict:
    return {"choices": [{"index": 0, "delta": {"content": text}}]}


def test_stream_watcher_counts_chunks_split_anywhere() -> None:
    stream = sse(delta("a"), delta("b"), delta(""), delta("c"), {"choices": [], "usage": {"completion_tokens": 3}})
    for size in (1, 2, 7, 64, len(stream)):
        watcher = StreamWatcher(started=0.0)
        for i in range(0, len(stream), size):
            watcher.feed(stream[i : i + size])
        assert watcher.content_chunks == 3
        assert watcher.usage == {"completion_tokens": 3}
        assert watcher.first_token_at is not None


def test_stream_watcher_sees_the_end_of_the_stream_split_anywhere() -> None:
    stream = sse(delta("a"), {"choices": [], "usage": {"completion_tokens": 1}})
    for size in (1, 3, 64, len(stream)):
        watcher = StreamWatcher(started=0.0)
        for i in range(0, len(stream), size):
            watcher.feed(stream[i : i + size])
            # Not before the whole [DONE] line has passed.
            assert watcher.done == (b"data: [DONE]\n" in stream[: i + size])
    said = StreamWatcher(started=0.0)  # an answer that merely says it
    said.feed(sse(delta("data: [DONE]"))[: -len(b"data: [DONE]\n\n")])
    assert not said.done


def test_stream_watcher_falls_back_to_chunks_without_usage() -> None:
    watcher = StreamWatcher(started=0.0)
    watcher.feed(sse(delta("a"), delta("b")))
    assert watcher.output_tokens == 2


def test_stream_watcher_ignores_what_is_not_json() -> None:
    watcher = StreamWatcher(started=0.0)
    watcher.feed(b": comment\n\ndata: {broken\n\ndata: [1, 2]\n\n")
    assert watcher.content_chunks == 0


def test_stream_watcher_counts_text_completion_chunks() -> None:
    watcher = StreamWatcher(started=0.0)
    text = [{"choices": [{"index": 0, "text": piece}]} for piece in ("def", " f", "", '"x"')]
    watcher.feed(sse(*text))
    assert watcher.content_chunks == 3 and watcher.first_token_at is not None and watcher.done
