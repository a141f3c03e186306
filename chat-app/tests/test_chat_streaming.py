"""Reading the upstream's event stream, and coalescing tokens on their way to the browser."""

from __future__ import annotations

import asyncio

import pytest

from foundry_chat.coalesce import CoalescingStream
from foundry_chat.completion_chunks import DONE, Chunk, StreamError, parse_line

pytestmark = pytest.mark.unit


def test_parse_token_usage_done_and_noise() -> None:
    assert parse_line('data: {"choices":[{"index":0,"delta":{"content":"Hi"}}]}') == Chunk("Hi")
    assert parse_line('data: {"choices":[{"index":0,"delta":{"role":"assistant"}}]}') == Chunk("")
    usage = parse_line('data: {"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3,"total_tokens":10}}')
    assert usage == Chunk("", 7, 3)
    assert parse_line("data: [DONE]") is DONE
    assert parse_line(": keep-alive") is None
    assert parse_line("") is None


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('data: {"error": {"message": "model crashed"}}', "model crashed"),
        ("data: {not json", "not JSON"),
        ("data: [1, 2]", "not a JSON object"),
    ],
)
def test_bad_stream_lines_are_errors_with_words(line: str, message: str) -> None:
    with pytest.raises(StreamError, match=message):
        parse_line(line)


def run_stream(arrivals: list[tuple[float, str]], interval: float) -> list[tuple[float, str]]:
    """Push tokens at the given offsets (s); returns what the sink got and when (offsets, s)."""

    async def go() -> list[tuple[float, str]]:
        loop = asyncio.get_running_loop()
        start = loop.time()
        sent: list[tuple[float, str]] = []

        async def sink(text: str) -> None:
            sent.append((loop.time() - start, text))

        stream = CoalescingStream(sink, interval)
        for at, token in arrivals:
            await asyncio.sleep(max(0.0, start + at - loop.time()))
            await stream.push(token)
        await stream.close()
        return sent

    return asyncio.run(go())


def test_first_token_goes_at_once_and_the_rest_is_coalesced() -> None:
    async def first_push() -> list[str]:
        sent: list[str] = []

        async def sink(text: str) -> None:
            sent.append(text)

        stream = CoalescingStream(sink, interval=60)
        await stream.push("a")
        return sent  # read before any timer could run: sent by push itself

    assert asyncio.run(first_push()) == ["a"]
    sent = run_stream([(0.0, "a"), (0.001, "b"), (0.002, "c"), (0.003, "d")], interval=0.05)
    assert "".join(text for _, text in sent) == "abcd"
    assert len(sent) == 2  # the first token, then everything that came within the interval


def test_a_pause_does_not_hold_tokens_back_longer_than_the_interval() -> None:
    sent = run_stream([(0.0, "a"), (0.005, "b"), (0.2, "c")], interval=0.03)
    b_sent_at = next(at for at, text in sent if "b" in text)
    assert b_sent_at < 0.1, "the timer sends 'b' before 'c' arrives"
    assert "".join(text for _, text in sent) == "abc"


def test_zero_interval_sends_every_token() -> None:
    sent = run_stream([(0.0, "a"), (0.0, "b"), (0.0, "c")], interval=0.0)
    assert [text for _, text in sent] == ["a", "b", "c"]
