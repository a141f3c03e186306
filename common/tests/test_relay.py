"""The relay pieces both the router and the gateway use (foundry_common/relay.py), and the error body's reading
(protocol.py). Whole lines: whatever the chunks, the client gets every complete line unchanged and never half of
one; an error event of ours starts on a fresh event. The first event: read up to the first that commits the answer."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from foundry_common.protocol import error_body, error_message, error_of
from foundry_common.relay import FIRST_EVENT_LIMIT, WholeLines, error_event, first_event, stream_error

pytestmark = pytest.mark.unit

STREAM = st.binary(max_size=400).map(lambda b: b.replace(b"\x00", b"\n"))  # plenty of line ends


@given(STREAM, st.lists(st.integers(min_value=0, max_value=400), max_size=20))
def test_any_chunking_passes_on_exactly_the_complete_lines(data: bytes, cuts: list[int]) -> None:
    points = sorted({min(c, len(data)) for c in cuts})
    chunks = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    lines = WholeLines()
    passed = [lines.push(chunk) for chunk in chunks]
    assert all(p == b"" or p.endswith(b"\n") for p in passed)
    end = data.rfind(b"\n") + 1
    assert b"".join(passed) == data[:end]
    assert lines.partial == data[end:]


@pytest.mark.parametrize(
    ("sent", "expected"),
    [
        (b"", b"data: {}\n\n"),  # nothing sent yet
        (b'data: {"a": 1}\n\n', b"data: {}\n\n"),  # after a whole event
        (b'data: {"a": 1}\n\ndata: {"b"', b"data: {}\n\n"),  # the half line is dropped
        (b'data: {"a": 1}\n', b"\ndata: {}\n\n"),  # an event left open is ended first
    ],
)
def test_an_error_event_starts_on_a_fresh_event(sent: bytes, expected: bytes) -> None:
    lines = WholeLines()
    lines.push(sent)
    assert lines.then(b"data: {}\n\n") == expected
    assert lines.partial == b""


def test_a_last_line_without_its_newline_is_ended_at_the_streams_end() -> None:
    lines = WholeLines()
    assert lines.push(b"data: {}\n\ndata: [DONE]") == b"data: {}\n\n"
    assert lines.rest() == b"data: [DONE]\n"
    assert lines.rest() == b""
    assert lines.then(b"data: {}\n\n") == b"\ndata: {}\n\n"  # after "[DONE]\n": the event is ended first


def chunked(*chunks: bytes) -> AsyncIterator[bytes]:
    async def gen() -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk

    return gen()


def event(data: dict) -> bytes:
    return f"data: {json.dumps(data)}\n\n".encode()


ROLE = event({"choices": [{"delta": {"role": "assistant", "content": ""}}]})
TOKEN = event({"choices": [{"delta": {"content": "Hi"}}]})
AFTER = event({"choices": [{"delta": {"content": " there"}}]})


@pytest.mark.parametrize("size", [1, 3, 17, 1000])
def test_the_first_event_is_read_up_to_the_first_text_whatever_the_chunks(size: int) -> None:
    stream = ROLE + TOKEN + AFTER
    chunks = [stream[i : i + size] for i in range(0, len(stream), size)]
    head = asyncio.run(first_event(chunked(*chunks)))
    assert head.startswith(ROLE + TOKEN)
    assert len(head) < len(ROLE + TOKEN) + size  # no more than the chunk that completed it


def test_the_first_event_stops_at_an_error_the_end_or_the_limit() -> None:
    error = error_event("no", "boom")
    assert asyncio.run(first_event(chunked(ROLE, error, TOKEN))) == ROLE + error
    assert asyncio.run(first_event(chunked(ROLE, b"data: [DONE]\n\n", TOKEN))) == ROLE + b"data: [DONE]\n\n"
    assert asyncio.run(first_event(chunked())) == b""
    endless = [b"data: " + b"x" * 1000 + b"\n"] * 100  # one huge event that never ends
    assert FIRST_EVENT_LIMIT <= len(asyncio.run(first_event(chunked(*endless)))) < FIRST_EVENT_LIMIT + 1100


def test_an_error_event_is_one_openai_error_and_is_found_among_the_first_events() -> None:
    broken = error_event("The upstream stopped.", "upstream_failed")
    assert broken.startswith(b"data: ") and broken.endswith(b"\n\n") and broken.count(b"\n") == 2
    found = stream_error(ROLE + broken)
    assert found is not None
    assert (found["message"], found["code"], found["type"]) == (
        "The upstream stopped.",
        "upstream_failed",
        "server_error",
    )
    assert stream_error(ROLE + TOKEN) is None
    assert stream_error(b'data: {"error": "plain"}\n\n') == {"message": "plain"}


def test_an_error_body_is_read_in_every_shape() -> None:
    assert error_message(error_body("too long", "context_length_exceeded")) == "too long"
    assert error_message(b'{"error": {"message": "too long"}}') == "too long"
    assert error_message(b'{"error": "bad"}') == "bad"
    assert error_message(b"plain failure") == "plain failure"
    assert error_message(b"") == "no details"
    fields = error_of(error_body("over", "context_length_exceeded", room=3))
    assert fields is not None and fields["room"] == 3 and fields["param"] is None
    assert error_of(b'{"error": "bad"}') is None and error_of(b"[1]") is None
