"""The upstream registry: probing, backoff after failures, marking down, DNS expansion, what /readyz reports."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from foundry_router.upstreams import Registry, Source

pytestmark = pytest.mark.unit

UP = Source("http://up:1/v1", "k")
DOWN = Source("http://down:2/v1", "k")


def handler(request: httpx.Request) -> httpx.Response:
    if request.url.host in {"down", "10.0.0.9"}:
        raise httpx.ConnectError("refused", request=request)
    if request.url.path == "/v1/models":
        return httpx.Response(200, json={"data": [{"id": "m1", "context_length": 2048}, {"id": "m2"}]})
    return httpx.Response(404, text="no", headers={"content-type": "text/plain"})


class FakeDns:
    """Answers like a resolver: one address per plain name, several for a scaled service, none for a gone one."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.asked: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append(host)
        if host not in self.table:
            raise OSError(f"[Errno -2] Name or service not known: {host}")
        return self.table[host]


def registry_of(*sources: Source, client: httpx.AsyncClient | None = None, dns: FakeDns | None = None) -> Registry:
    return Registry(
        list(sources),
        client or httpx.AsyncClient(transport=httpx.MockTransport(handler)),
        interval=10,
        max_backoff=4,
        max_concurrency=2,
        queue_size=3,
        resolve=dns or FakeDns({"up": ["10.0.0.1"], "down": ["10.0.0.2"]}),
    )


def probed(*sources: Source, dns: FakeDns | None = None) -> Registry:
    async def go() -> Registry:
        registry = registry_of(*sources, dns=dns)
        await registry.probe_all()
        return registry

    return asyncio.run(go())


def test_probe_marks_up_and_down_with_reasons() -> None:
    registry = probed(UP, DOWN)
    up, down = registry.statuses
    assert (up.state, up.shape, up.models) == ("up", "openai", ("m1", "m2"))
    assert down.state == "down" and "connection failed" in down.error
    assert registry.ready
    assert list(registry.models()) == ["m1", "m2"]
    assert registry.context_length("m1") == 2048 and registry.context_length("m2") is None
    snapshot = registry.snapshot()
    assert [u["state"] for u in snapshot] == ["up", "down"]
    assert snapshot[1]["error"].startswith("connection failed")
    assert snapshot[0] | {"in_flight": 0, "queued": 0, "max_concurrency": 2} == snapshot[0]


def test_a_model_served_twice_is_listed_once_with_both_upstreams() -> None:
    other = Source("http://other:3/v1", "k")
    registry = probed(UP, other, dns=FakeDns({"up": ["10.0.0.1"], "other": ["10.0.0.3"]}))
    models = registry.models()
    assert list(models) == ["m1", "m2"]
    assert [s.upstream.name for s in models["m1"]] == ["up:1", "other:3"]


def test_failed_upstream_backs_off_doubling_up_to_the_cap() -> None:
    async def go() -> list[float]:
        registry = registry_of(DOWN)
        await registry.refresh_addresses()
        status = registry.statuses[0]
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
    registry.mark_failed(registry.statuses[0].upstream, "could not be reached")
    assert not registry.ready
    assert registry.statuses[0].error == "could not be reached"
    assert registry.statuses[0].shape is None  # detected again when it returns
    assert len(changes) == 1


def test_nothing_probed_yet_is_not_ready() -> None:
    registry = registry_of(UP)
    assert not registry.ready and registry.models() == {}


def test_a_name_with_several_addresses_is_one_upstream_per_address() -> None:
    dns = FakeDns({"scaled": ["10.0.0.5", "10.0.0.4"]})
    registry = probed(Source("http://scaled:5273/v1", "k"), dns=dns)
    assert [s.upstream.name for s in registry.statuses] == ["scaled@10.0.0.5:5273", "scaled@10.0.0.4:5273"]
    assert [s.upstream.base_url for s in registry.statuses] == ["http://10.0.0.5:5273/v1", "http://10.0.0.4:5273/v1"]
    assert all(s.state == "up" for s in registry.statuses)
    assert [s.upstream.name for s in registry.models()["m1"]] == [s.upstream.name for s in registry.statuses]


def test_addresses_are_resolved_again_at_every_round_keeping_the_state_of_those_still_there() -> None:
    dns = FakeDns({"scaled": ["10.0.0.4", "10.0.0.5"]})

    async def go() -> None:
        registry = registry_of(Source("http://scaled:5273/v1", "k"), dns=dns)
        await registry.probe_all()
        kept = registry.statuses[0]
        kept.slots.take()  # a request in flight there
        dns.table["scaled"] = ["10.0.0.4", "10.0.0.6"]  # one replica replaced
        await registry.probe_all()
        names = [s.upstream.name for s in registry.statuses]
        assert names == ["scaled@10.0.0.4:5273", "scaled@10.0.0.6:5273"]
        assert registry.statuses[0] is kept and kept.slots.in_flight == 1
        dns.table["scaled"] = ["10.0.0.4"]  # scaled down to one: the plain name again
        await registry.probe_all()
        assert [s.upstream.name for s in registry.statuses] == ["scaled:5273"]
        assert dns.asked == ["scaled"] * 3

    asyncio.run(go())


def test_a_name_that_does_not_resolve_is_down_and_says_why() -> None:
    registry = probed(Source("http://foundry-local:5273/v1", "k"), dns=FakeDns({}))
    (status,) = registry.statuses
    assert status.state == "down" and not status.resolved
    assert "does not resolve" in status.error and "foundry-local" in status.error


def test_addresses_and_the_cloud_are_never_resolved() -> None:
    dns = FakeDns({})
    registry = probed(
        Source("http://127.0.0.1:1/v1", "k"), Source("https://api.cloud.test/v1", "k", cloud=True, fixed_model="big"),
        dns=dns,
    )  # fmt: skip
    assert dns.asked == []
    assert [s.upstream.name for s in registry.statuses] == ["127.0.0.1:1", "api.cloud.test"]
