"""Admission from measured capacity with real processes: paced upstreams that share a fixed throughput among their
streams, as a CPU runtime does, behind one router. The faster one learns a higher limit and is given more streams;
an overloaded upstream sheds with 429 and a Retry-After from its measured drain rate."""

from __future__ import annotations

import asyncio
import json
from collections import Counter

import httpx
import pytest

from tests.support.paced import PACED_MODEL

pytestmark = pytest.mark.integration

FLOOR = 20.0  # tokens/s each stream keeps (STREAM_RATE_FLOOR_TOKENS_PER_SECOND)


async def ask(client: httpx.AsyncClient, base_url: str, max_tokens: int) -> tuple[int, dict[str, str], int]:
    """One streamed chat completion, read to its end: status, headers, content chunks."""
    request = {"model": PACED_MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": max_tokens,
               "stream": True}  # fmt: skip
    async with client.stream("POST", f"{base_url}/chat/completions", json=request) as response:
        chunks = 0
        async for line in response.aiter_lines():
            if line.startswith("data: {"):
                chunks += bool((json.loads(line[6:]).get("choices") or [{}])[0].get("delta", {}).get("content"))
        return response.status_code, dict(response.headers), chunks


def users(base_url: str, count: int, rounds: int, max_tokens: int) -> list[list[tuple[int, dict[str, str], int]]]:
    """`count` users, each asking `rounds` questions one after the other (as people do): their answers by round."""

    async def user(client: httpx.AsyncClient) -> list[tuple[int, dict[str, str], int]]:
        return [await ask(client, base_url, max_tokens) for _ in range(rounds)]

    async def go() -> list[list[tuple[int, dict[str, str], int]]]:
        async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=None)) as client:
            return list(await asyncio.gather(*(user(client) for _ in range(count))))

    return asyncio.run(go())


def test_the_faster_upstream_learns_a_higher_limit_and_is_given_more_streams(fleet) -> None:
    # Each stream at most 100 tokens/s; in all 250 (12 streams above the floor, not 13) and 70 (3, not 4).
    fast = fleet.paced(first_token_ms=20, token_interval_ms=10, capacity_tokens_per_second=250)
    slow = fleet.paced(first_token_ms=20, token_interval_ms=10, capacity_tokens_per_second=70)
    router = fleet.router([fast.url, slow.url], STREAM_RATE_FLOOR_TOKENS_PER_SECOND=str(FLOOR),
                          UPSTREAM_MAX_CONCURRENCY="16")  # fmt: skip
    router.wait_ready(model=PACED_MODEL)
    names = {fast.url[7:-3]: "fast", slow.url[7:-3]: "slow"}

    learning = users(router.base_url, count=18, rounds=2, max_tokens=20)
    before = {"fast": fast.stats()["started"], "slow": slow.stats()["started"]}
    learned = users(router.base_url, count=18, rounds=2, max_tokens=20)
    assert all(status == 200 and chunks == 20 for user in learning + learned for status, _, chunks in user)

    limits = {names[u["name"]]: u["concurrency_limit"] for u in router.readyz()["upstreams"]}
    assert limits["fast"] >= 8, f"raised well beyond the initial 4: {limits}"
    assert limits["slow"] <= 3, f"3 streams keep the floor on the slow one, 4 do not: {limits}"
    assert all(u["stream_rate_floor"] == FLOOR for u in router.readyz()["upstreams"])
    # Where the streams went once the limits were learned (each upstream counts the streams it served).
    later = {"fast": fast.stats()["started"] - before["fast"], "slow": slow.stats()["started"] - before["slow"]}
    print(f"learned limits {limits}, streams served once learned {later}")
    assert later["fast"] >= 2 * later["slow"], later
    assert fast.stats()["peak"] > slow.stats()["peak"]
    for name, kind in names.items():
        assert router.metric("router_upstream_concurrency_limit", upstream=name) == limits[kind]
        assert router.metric("router_upstream_stream_rate_floor_tokens_per_second", upstream=name) == FLOOR


def test_an_overloaded_upstream_sheds_with_a_retry_after_from_its_drain_rate(fleet) -> None:
    # Each answer holds its slot at least 1 s (20 ms, then 50 more tokens 20 ms apart); one at a time.
    slow = fleet.paced(first_token_ms=20, token_interval_ms=20)
    router = fleet.router([slow.url], UPSTREAM_MAX_CONCURRENCY="1", UPSTREAM_QUEUE_SIZE="2")
    router.wait_ready(model=PACED_MODEL)
    assert users(router.base_url, count=1, rounds=1, max_tokens=51)[0][0][0] == 200  # the drain rate measured

    results = asyncio.run(burst_of(router.base_url, 6, max_tokens=51))
    codes = Counter(status for status, _, _ in results)
    assert codes == {200: 3, 429: 3}, codes  # one in flight, two waiting, the rest refused at once
    # Behind the two waiting, a slot that frees every second or more: at least 3 s (the old guess, twice the time
    # to first token, said 1 s).
    retry_afters = [int(headers["retry-after"]) for status, headers, _ in results if status == 429]
    print(f"Retry-After {retry_afters}")
    assert all(3 <= seconds < 60 for seconds in retry_afters), retry_afters


async def burst_of(base_url: str, count: int, max_tokens: int) -> list[tuple[int, dict[str, str], int]]:
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=None)) as client:
        return list(await asyncio.gather(*(ask(client, base_url, max_tokens) for _ in range(count))))
