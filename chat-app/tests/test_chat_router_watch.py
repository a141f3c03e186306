"""The chat's watch on the router's /readyz, against an in-process transport (no network)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from foundry_chat.router_watch import RouterStatus, RouterWatch

pytestmark = pytest.mark.unit

ROUTER = "http://router:4000/v1"
READY_BODY = {
    "ready": True,
    "models": ["phi-4-mini"],
    "upstreams": [{"name": "foundry-local:5273", "url": "http://foundry-local:5273/v1", "cloud": False, "state": "up"}],
    "warnings": [],
}


class FakeRouter:
    """Answers /readyz with whatever `body` holds now, or refuses connections while `down`."""

    def __init__(self) -> None:
        self.body: dict = READY_BODY
        self.down = False
        self.paths: list[str] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        if self.down:
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        return httpx.Response(200 if self.body.get("ready") else 503, json=self.body)


def watch(fake: FakeRouter, interval: float = 60.0) -> tuple[RouterWatch, list[RouterStatus]]:
    seen: list[RouterStatus] = []
    client = httpx.AsyncClient(transport=httpx.MockTransport(fake.handle))
    return RouterWatch(ROUTER, client, interval, on_change=seen.append), seen


def test_reads_the_routers_readyz_and_keeps_it() -> None:
    fake = FakeRouter()

    async def scenario() -> RouterStatus:
        router, seen = watch(fake)
        status = await router.refresh()
        assert router.status is status and seen == [status]
        return status

    status = asyncio.run(scenario())
    assert fake.paths == ["/readyz"], "the router's own route, beside /v1"
    assert status.reachable and status.ready and status.models == ("phi-4-mini",)
    assert status.upstreams[0]["name"] == "foundry-local:5273"


def test_a_router_that_is_down_is_said_in_words() -> None:
    fake = FakeRouter()
    fake.down = True
    status = asyncio.run(watch(fake)[0].refresh())
    assert not status.reachable and not status.ready and status.models == ()
    assert status.message == (
        "the router at http://router:4000/v1 is not reachable: ConnectError: [Errno 111] Connection refused; "
        "start it with `docker compose up -d router`"
    )


def test_polls_every_interval_and_at_once_when_woken() -> None:
    fake = FakeRouter()

    async def scenario() -> None:
        reads: asyncio.Queue[RouterStatus] = asyncio.Queue()
        client = httpx.AsyncClient(transport=httpx.MockTransport(fake.handle))
        router = RouterWatch(ROUTER, client, 0.05, on_change=reads.put_nowait)
        await router.refresh()
        router.start()
        try:
            fake.body = {"ready": False, "models": [], "upstreams": [], "message": "No upstream serves a model yet."}
            while (await asyncio.wait_for(reads.get(), 2)).ready:
                pass  # polled again within the interval
            assert router.status.message == "No upstream serves a model yet."
        finally:
            await router.stop()
        # A watch that reads every 60 s (its loop waits first: the read above was the start's) reads at once when woken.
        slow = RouterWatch(ROUTER, client, 60.0, on_change=reads.put_nowait)
        await slow.refresh()
        slow.start()
        try:
            while not reads.empty():
                reads.get_nowait()
            fake.body = READY_BODY
            slow.wake()
            assert (await asyncio.wait_for(reads.get(), 2)).ready, "read at once, not in 60 s"
        finally:
            await slow.stop()

    asyncio.run(scenario())


def test_callers_at_the_same_moment_share_one_read() -> None:
    fake = FakeRouter()

    async def scenario() -> None:
        router, _ = watch(fake)
        await asyncio.gather(*(router.refresh() for _ in range(5)))

    asyncio.run(scenario())
    assert fake.paths == ["/readyz"]
