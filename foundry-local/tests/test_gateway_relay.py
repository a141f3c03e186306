"""The gateway's stream relay (gateway.py `relay`) when the runtime is cut mid-event: the client gets the whole
events before the cut, then one clean error event, never the error glued to half an event.

The gateway's upstream is the Foundry Local runtime it embeds, which cannot be told to die mid-event, and the
gateway takes no other upstream URL. So the relay function itself is run on a real aiohttp response from the paced
upstream (tests/support/paced_upstream.py --break-after N --break-mid-event: a process that writes half an event
and drops the connection), the response the gateway's own aiohttp session would hand it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import aiohttp
import pytest
from prometheus_client import generate_latest

from foundry_common.relay import first_event
from foundry_embedded.gateway import relay
from foundry_embedded.metrics import Metrics
from tests.support.paced import PACED_MODEL, PacedUpstream, start_paced_upstream
from tests.support.process import metric_sum

pytestmark = pytest.mark.integration

BREAK_AFTER = 4  # tokens sent whole before the cut


@pytest.fixture(scope="module")
def cutting() -> Iterator[PacedUpstream]:
    upstream = start_paced_upstream(first_token_ms=2, token_interval_ms=2, break_after=BREAK_AFTER,
                                    break_mid_event=True)  # fmt: skip
    yield upstream
    upstream.stop()


async def relayed(upstream: PacedUpstream, metrics: Metrics) -> bytes:
    """What the gateway's relay sends its client for one stream from `upstream`."""
    request = {"model": PACED_MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 20, "stream": True}
    async with aiohttp.ClientSession() as session:
        response = await session.post(f"{upstream.url}/chat/completions", json=request)
        head = await first_event(response.content.iter_any())
        return b"".join(
            [chunk async for chunk in relay(metrics, response, head, PACED_MODEL, time.perf_counter(), "r1")]
        )


def test_a_runtime_cut_mid_event_gives_whole_events_then_a_clean_error_event(cutting: PacedUpstream) -> None:
    metrics = Metrics()
    sent = asyncio.run(relayed(cutting, metrics))
    events = sent.split(b"\n\n")
    assert events[-1] == b"", "the stream ends at the end of an event"
    parsed = [json.loads(event.removeprefix(b"data: ")) for event in events[:-1]]  # every event whole JSON
    *answer, last = parsed
    assert [c["choices"][0]["delta"].get("content") for c in answer] == ["", *(f" tok{i}" for i in range(BREAK_AFTER))]
    assert last["error"]["code"] == "stream_failed" and "stopped answering" in last["error"]["message"]
    assert f" tok{BREAK_AFTER}".encode() not in sent, "the half event is dropped"
    text = generate_latest(metrics.registry).decode()
    assert metric_sum(text, "foundry_local_gateway_errors_total", error_type="stream_failed") == 1
