"""A visible place in the queue (waiting.py): the router as a real process in front of a paced upstream that takes one
request at a time (UPSTREAM_MAX_CONCURRENCY=1). A first stream holds the slot for as long as the test keeps it open,
so the others wait in a queue whose order the test knows; closing it (the client leaves) hands the slot on.

A stream that waits starts at once and is told its place (protocol.queue_comment), then answered as any other; a
whole answer that waited has its place and wait as headers; a queue timeout after the early start is one error
event, which the openai SDK raises. Requests that do not wait are unchanged."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest

from foundry_common.protocol import (
    QUEUE_AHEAD_HEADER,
    QUEUE_WAIT_HEADER,
    UPSTREAM_HEADER,
    queue_place,
    where_headers,
)
from tests.support.paced import PACED_MODEL
from tests.support.process import wait_until

pytestmark = pytest.mark.integration

HI = [{"role": "user", "content": "Hi"}]
ONE_AT_A_TIME = {"UPSTREAM_MAX_CONCURRENCY": "1", "UPSTREAM_QUEUE_SIZE": "4"}


class Stream:
    """One streamed chat completion, read line by line when the test asks (its headers are in when it is built)."""

    def __init__(self, client: httpx.Client, router, max_tokens: int) -> None:
        body = {"model": PACED_MODEL, "messages": HI, "max_tokens": max_tokens, "stream": True}
        request = client.build_request("POST", f"{router.base_url}/chat/completions", json=body)
        self.response = client.send(request, stream=True)
        assert self.response.status_code == 200, self.response.read()
        self.lines: Iterator[str] = (line for line in self.response.iter_lines() if line)

    @property
    def headers(self) -> httpx.Headers:
        return self.response.headers

    def next_place(self) -> tuple[int, float | None]:
        place = queue_place(line := next(self.lines))
        assert place is not None, line
        return place

    def rest(self) -> tuple[list[int], dict[str, str] | None, str]:
        """Until the end: the places told (each change once), where it ran, and the answer's text."""
        places: list[int] = []
        where, text = None, ""
        for line in self.lines:
            if (place := queue_place(line)) is not None:
                if not places or places[-1] != place[0]:  # a heartbeat repeats the place
                    places.append(place[0])
            elif (headers := where_headers(line)) is not None:
                where = headers
            elif line == "data: [DONE]":
                break
            elif line.startswith("data:") and (choices := json.loads(line[5:])["choices"]):
                text += choices[0]["delta"].get("content") or ""
        self.response.close()
        return places, where, text

    def close(self) -> None:
        self.response.close()


def holder(client: httpx.Client, router) -> Stream:
    """A stream that has the one slot (its first token is in) and keeps it until closed."""
    stream = Stream(client, router, max_tokens=10_000)
    assert QUEUE_AHEAD_HEADER not in stream.headers  # it did not wait: no early start, no place
    assert UPSTREAM_HEADER in stream.headers
    first = next(stream.lines)
    assert first.startswith("data:") and queue_place(first) is None, first
    return stream


def text_of(tokens: int) -> str:
    return "".join(f" tok{i}" for i in range(tokens))


def test_waiting_streams_are_told_their_place_in_order_then_answered(fleet) -> None:
    router = fleet.router([fleet.paced(first_token_ms=50, token_interval_ms=5).url], **ONE_AT_A_TIME)
    router.wait_ready(model=PACED_MODEL)
    with httpx.Client(timeout=30) as client:
        first = holder(client, router)
        second = Stream(client, router, max_tokens=3)
        assert second.headers[QUEUE_AHEAD_HEADER] == "0" and second.headers["content-type"].startswith("text/event")
        assert UPSTREAM_HEADER not in second.headers  # no upstream yet: it comes in the stream
        assert second.next_place()[0] == 0  # next in line, told before anything else
        third = Stream(client, router, max_tokens=4)
        assert third.headers[QUEUE_AHEAD_HEADER] == "1" and third.next_place()[0] == 1
        first.close()  # its client leaves: the slot goes to the second, the third moves up
        places, where, text = second.rest()
        assert (places, text) == ([], text_of(3))
        assert where is not None and where[UPSTREAM_HEADER] == router.readyz()["upstreams"][0]["name"]
        places, where, text = third.rest()
        assert places == [0] and where is not None and text == text_of(4)
    assert router.metric("router_upstream_in_flight") == 0 and router.metric("router_upstream_queue_length") == 0


def test_the_openai_sdk_reads_a_queued_stream_as_any_other(fleet) -> None:
    router = fleet.router([fleet.paced(first_token_ms=50, token_interval_ms=5).url], **ONE_AT_A_TIME)
    router.wait_ready(model=PACED_MODEL)
    sdk = openai.OpenAI(base_url=router.base_url, api_key="unused", max_retries=0, timeout=30)
    with httpx.Client(timeout=30) as client:
        first = holder(client, router)
        stream = sdk.chat.completions.create(model=PACED_MODEL, messages=HI, max_tokens=6, stream=True)  # type: ignore[arg-type]
        assert stream.response.headers[QUEUE_AHEAD_HEADER] == "0"  # it waits, its response started
        first.close()
        chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text_of(6)


def test_a_whole_answer_that_waited_has_its_place_and_wait_as_headers(fleet) -> None:
    # A text completion: the paced upstream answers it whole (its chats always stream); the same path in the router.
    upstream = fleet.paced_with("--completions", first_token_ms=50, token_interval_ms=5)
    router = fleet.router([upstream.url], **ONE_AT_A_TIME)
    router.wait_ready(model=PACED_MODEL)
    body = {"model": PACED_MODEL, "prompt": "Hi", "max_tokens": 2}
    with httpx.Client(timeout=30) as client, ThreadPoolExecutor(1) as pool:
        first = holder(client, router)
        waited = pool.submit(httpx.post, f"{router.base_url}/completions", json=body, timeout=30)
        wait_until(lambda: router.readyz()["upstreams"][0]["queued"] == 1, 10, "the request in the queue")
        first.close()
        response = waited.result()
        alone = client.post(f"{router.base_url}/completions", json=body)
    assert response.status_code == 200 and response.json()["choices"][0]["text"] == text_of(2)
    assert response.headers[QUEUE_AHEAD_HEADER] == "0" and int(response.headers[QUEUE_WAIT_HEADER]) >= 0
    assert alone.status_code == 200 and QUEUE_AHEAD_HEADER not in alone.headers  # it did not wait: unchanged


def test_a_queue_timeout_after_the_early_start_is_an_error_event_the_sdk_raises(fleet) -> None:
    upstream = fleet.paced(first_token_ms=50, token_interval_ms=5)
    router = fleet.router([upstream.url], **ONE_AT_A_TIME, QUEUE_TIMEOUT_SECONDS="0.3")
    router.wait_ready(model=PACED_MODEL)
    sdk = openai.OpenAI(base_url=router.base_url, api_key="unused", max_retries=0, timeout=30)
    with httpx.Client(timeout=30) as client:
        first = holder(client, router)
        stream = sdk.chat.completions.create(model=PACED_MODEL, messages=HI, max_tokens=2, stream=True)  # type: ignore[arg-type]
        with pytest.raises(openai.APIError, match="QUEUE_TIMEOUT_SECONDS") as raised:
            list(stream)
        assert raised.value.code == "queue_timeout"
        first.close()
    assert router.metric("router_queue_rejections_total", reason="queue_timeout") == 1
    wait_until(lambda: router.metric("router_upstream_in_flight") == 0, 10, "the first stream's slot back")
    assert router.metric("router_upstream_queue_length") == 0
    log = [json.loads(line) for line in router.log().splitlines() if line.startswith("{")]
    assert any(entry.get("status") == 429 and entry.get("error") == "queue_timeout" for entry in log)


def test_an_upstream_lost_while_a_stream_waits_ends_it_with_an_error_event(fleet) -> None:
    upstream = fleet.paced(first_token_ms=50, token_interval_ms=5)
    router = fleet.router([upstream.url], **ONE_AT_A_TIME)
    router.wait_ready(model=PACED_MODEL)
    sdk = openai.OpenAI(base_url=router.base_url, api_key="unused", max_retries=0, timeout=30)
    with httpx.Client(timeout=30) as client:
        first = holder(client, router)
        stream = sdk.chat.completions.create(model=PACED_MODEL, messages=HI, max_tokens=2, stream=True)  # type: ignore[arg-type]
        upstream.proc.kill()  # its one stream breaks, and the queue behind it has nowhere to go
        upstream.proc.wait()
        with pytest.raises(openai.APIError) as raised:
            list(stream)
        first.close()
    # Either the waiters were told the upstream was gone, or the freed slot led to a dead upstream: said in words.
    assert raised.value.code in {"no_upstream", "upstreams_failed"}, raised.value.body
    assert "No upstream could answer" in raised.value.message
    wait_until(lambda: router.metric("router_upstream_in_flight") == 0, 10, "the slots back")
    assert router.metric("router_upstream_queue_length") == 0
