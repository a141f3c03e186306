"""Stopping the router as Docker and Swarm do (SIGTERM): the answers being streamed finish, `/healthz` says it is
stopping (a load balancer then sends new requests elsewhere), and the process exits on its own, with 0. A real
router process in front of a paced upstream, slow on purpose so that the stop lands mid-answer."""

from __future__ import annotations

import asyncio
import json
import signal

import httpx
import pytest

from tests.support.paced import PACED_MODEL
from tests.support.process import log_events

pytestmark = pytest.mark.integration

TOKENS = 40  # one every 50 ms: an answer streams for about 2 s


async def streamed_text(http: httpx.AsyncClient, on_first_text: asyncio.Event | None = None) -> str:
    request = {"model": PACED_MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": TOKENS}
    text = ""
    async with http.stream("POST", "/v1/chat/completions", json={**request, "stream": True}) as response:
        assert response.status_code == 200, await response.aread()
        async for line in response.aiter_lines():
            if line.startswith("data: {"):
                event = json.loads(line[6:])
                assert "error" not in event, event
                for choice in event["choices"]:
                    text += choice["delta"].get("content") or ""
                if text and on_first_text is not None:
                    on_first_text.set()
    return text


def test_a_stop_lets_the_answers_in_flight_finish_then_exits(fleet) -> None:
    slow = fleet.paced(first_token_ms=10, token_interval_ms=50)
    router = fleet.router([slow.url], SHUTDOWN_NOTICE_SECONDS="1", SHUTDOWN_GRACE_SECONDS="30")
    router.wait_ready(model=PACED_MODEL)

    async def scenario() -> tuple[str, str, dict]:
        async with httpx.AsyncClient(base_url=router.url, timeout=30) as http:
            streaming = asyncio.Event()
            first = asyncio.create_task(streamed_text(http, streaming))
            await streaming.wait()
            router.proc.send_signal(signal.SIGTERM)
            while (health := await http.get("/healthz")).status_code == 200:  # noqa: ASYNC110 (another process)
                await asyncio.sleep(0.05)
            # A balancer that has not yet seen the failing health check still sends requests here.
            late = await streamed_text(http)
            return await first, late, health.json()

    first, late, health = asyncio.run(scenario())
    assert health["status"] == "stopping", health
    expected = "".join(f" tok{i}" for i in range(TOKENS))
    assert (first, late) == (expected, expected)
    assert router.proc.wait(timeout=30) == 0
    drained = [e for e in log_events(router.log_path) if e.get("event") == "drained"]
    assert [e["in_flight"] for e in drained] == [0]
