"""Failure classes (router failures.py), with real processes: an upstream's refusal of a request (an OpenAI error that
blames the request) reaches the client as it was said and never counts against the upstream. While one client
sends what the upstream does not support, in a loop, another client's requests all succeed and the upstream never
leaves rotation."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from tests.support.paced import PACED_MODEL
from tests.support.process import metric_sum

pytestmark = pytest.mark.integration

HI = [{"role": "user", "content": "Hi"}]
TOOLS = [{"type": "function", "function": {"name": "now", "parameters": {"type": "object", "properties": {}}}}]
REFUSED = 12  # unsupported requests sent in a loop
GOOD = 12  # good streams sent meanwhile, by another client


async def good_stream(client: httpx.AsyncClient, base_url: str) -> tuple[int, int]:
    """One streamed answer: its status and the number of text chunks."""
    request = {"model": PACED_MODEL, "messages": HI, "max_tokens": 6, "stream": True}
    tokens = 0
    async with client.stream("POST", f"{base_url}/chat/completions", json=request) as response:
        async for line in response.aiter_lines():
            if line.startswith("data: {"):
                event = json.loads(line[6:])
                assert "error" not in event, event
                tokens += sum(1 for c in event["choices"] if (c.get("delta") or {}).get("content"))
    return response.status_code, tokens


async def unsupported_loop(client: httpx.AsyncClient, url: str, stream: bool) -> list[tuple[int, dict, float]]:
    """The refused requests, one after another: status, error, and router_upstream_up right after each."""
    seen = []
    for _ in range(REFUSED):
        request = {"model": PACED_MODEL, "messages": HI, "tools": TOOLS, "stream": stream}
        response = await client.post(f"{url}/v1/chat/completions", json=request)
        up = metric_sum((await client.get(f"{url}/metrics")).text, "router_upstream_up")
        seen.append((response.status_code, response.json()["error"], up))
    return seen


@pytest.mark.parametrize(
    ("flags", "stream", "status"),
    [
        (("--refuse-status", "400"), False, 400),
        (("--refuse-status", "500"), False, 500),  # a 5xx that blames the request (invalid_request_error)
        (("--refuse-in-stream",), True, 400),  # the refusal as a 200 stream's first event, as the runtime does
    ],
    ids=["400", "500 blaming the request", "error event of a stream"],
)
def test_unsupported_requests_in_a_loop_never_take_the_upstream_out_of_rotation(
    fleet, flags: tuple[str, ...], stream: bool, status: int
) -> None:
    upstream = fleet.paced_with("--refuse-field", "tools", *flags, first_token_ms=5, token_interval_ms=5)
    router = fleet.router([upstream.url])
    router.wait_ready(model=PACED_MODEL)

    async def go() -> tuple[list, list]:
        async with httpx.AsyncClient(timeout=30) as refused, httpx.AsyncClient(timeout=30) as served:

            async def good_ones() -> list[tuple[int, int]]:
                return [await good_stream(served, router.base_url) for _ in range(GOOD)]

            return await asyncio.gather(unsupported_loop(refused, router.url, stream), good_ones())

    refusals, answers = asyncio.run(go())
    assert answers == [(200, 6)] * GOOD
    for code, error, up in refusals:
        assert code == status
        assert error["code"] == "unsupported_parameter" and error["param"] == "tools", error
        assert "'tools' is not supported" in error["message"] and "send the request without it" in error["message"]
        assert up == 1
    assert router.readyz()["upstreams"][0]["state"] == "up"
    assert router.metric("router_failovers_total") == 0
    assert "upstream_marked_down" not in router.log()
    assert router.metric("router_requests_total", code=str(status)) == REFUSED
