"""The upstream registry: probing, backoff after failures, marking down, and what /readyz reports."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from foundry_chat.upstreams import Registry, Upstream, UpstreamStatus

pytestmark = pytest.mark.unit

UP = Upstream("up:1", "http://up:1/v1", "k")
DOWN = Upstream("down:2", "http://down:2/v1", "k")


def handler(request: httpx.Request) -> httpx.Response:
    if request.url.host == "down":
        raise httpx.ConnectError("refused", request=request)
    if request.url.path == "/v1/models":
        return httpx.Response(200, json={"data": [{"id": "m1"}, {"id": "m2"}]})
    return httpx.Response(404, text="no", headers={"content-type": "text/plain"})


def probed(*upstreams: Upstream) -> Registry:
    async def go() -> Registry:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            registry = Registry([UpstreamStatus(u) for u in upstreams], client, interval=10, max_backoff=4)
            await registry.probe_all()
            return registry

    return asyncio.run(go())


def test_probe_marks_up_and_down_with_reasons() -> None:
    registry = probed(UP, DOWN)
    up, down = registry.statuses
    assert (up.state, up.shape, up.models) == ("up", "openai", ("m1", "m2"))
    assert down.state == "down" and "connection failed" in down.error
    assert registry.ready
    assert registry.models() == ["m1", "m2"]
    snapshot = registry.snapshot()
    assert [u["state"] for u in snapshot] == ["up", "down"]
    assert snapshot[1]["error"].startswith("connection failed")


def test_failed_upstream_backs_off_doubling_up_to_the_cap() -> None:
    async def go() -> list[float]:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            status = UpstreamStatus(DOWN)
            registry = Registry([status], client, interval=10, max_backoff=4)
            delays = []
            for _ in range(6):
                await registry.probe_one(status)
                delays.append(round(status.next_probe_at - time.monotonic(), 1))
            return delays

    assert asyncio.run(go()) == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_mark_failed_stops_routing_at_once() -> None:
    registry = probed(UP)
    changes = []
    registry.on_change = changes.append
    registry.mark_failed(UP, "could not be reached")
    assert not registry.ready
    assert registry.statuses[0].error == "could not be reached"
    assert registry.statuses[0].shape is None  # detected again when it returns
    assert len(changes) == 1


def test_nothing_probed_yet_is_not_ready() -> None:
    registry = Registry([UpstreamStatus(UP)], httpx.AsyncClient(), interval=10, max_backoff=4)
    assert not registry.ready and registry.models() == []
