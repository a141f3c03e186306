"""A slot is a lease (admission.Lease): whatever happens at any await point of one request's life, the upstream's
slot comes back and its queue empties.

The router app runs in this process (its real lifespan, its real aiohttp session) in front of a real paced upstream.
Faults are injected outside our code, at each point where a request waits or reports: the ASGI receive and send
(the client), the aiohttp session's post, read and stream iteration (the upstream), and the metrics recorder's calls
(a bug there). A first run without a fault lists the points one request meets; then one run per point fails there,
with a bug (Injected), the upstream's failure (aiohttp.ClientPayloadError) or a cancellation (the request's task
cancelled there, as when its client leaves).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest

from foundry_common.protocol import QUEUE_COMMENT_PREFIX
from foundry_router.app import create_app
from foundry_router.service import Router
from foundry_router.settings import Settings
from tests.support.paced import PACED_MODEL, PacedUpstream, start_paced_upstream

pytestmark = pytest.mark.integration

KINDS = ("bug", "upstream", "cancel")


class Injected(Exception):
    """A fault of the test's making (a bug in code the request runs)."""


class Faults:
    """Notes the points a request meets, as (name, how many times so far), and fails it at `at` with `kind`."""

    def __init__(self, at: tuple[str, int] | None, kind: str) -> None:
        self.at, self.kind = at, kind
        self.met: list[tuple[str, int]] = []

    def hit(self, name: str) -> bool:
        point = (name, sum(1 for seen, _ in self.met if seen == name) + 1)
        self.met.append(point)
        return point == self.at

    def now(self, name: str) -> None:
        """A point in synchronous code (a metrics call): raise there."""
        if self.hit(name):
            raise asyncio.CancelledError if self.kind == "cancel" else self.error()

    async def wait(self, name: str) -> None:
        """An await point: fail there; a cancellation is delivered to the request's task as a real one."""
        if not self.hit(name):
            return
        if self.kind == "cancel":
            task = asyncio.current_task()
            assert task is not None
            task.cancel()
            await asyncio.sleep(0)
        raise self.error()

    def error(self) -> Exception:
        return Injected("injected") if self.kind == "bug" else aiohttp.ClientPayloadError("injected")


class Content:
    def __init__(self, content: aiohttp.StreamReader, faults: Faults) -> None:
        self.content, self.faults = content, faults

    async def iter_any(self) -> AsyncIterator[bytes]:
        async for chunk in self.content.iter_any():
            await self.faults.wait("upstream chunk")
            yield chunk


class Response:
    """The upstream's aiohttp response, with fault points where it is read."""

    def __init__(self, response: aiohttp.ClientResponse, faults: Faults, opened: list) -> None:
        self.response, self.faults = response, faults
        self.content = Content(response.content, faults)
        opened.append(response)

    def __getattr__(self, name: str) -> object:
        return getattr(self.response, name)

    async def read(self) -> bytes:
        await self.faults.wait("upstream read")
        return await self.response.read()


class Session:
    """The router's aiohttp session, with a fault point before and after each post."""

    def __init__(self, session: aiohttp.ClientSession, faults: Faults) -> None:
        self.session, self.faults = session, faults
        self.opened: list[aiohttp.ClientResponse] = []

    async def post(self, *args: object, **kwargs: object) -> Response:
        await self.faults.wait("upstream post")
        response = await self.session.post(*args, **kwargs)  # type: ignore[arg-type]
        try:
            await self.faults.wait("upstream headers")
        except BaseException:
            response.close()
            raise
        return Response(response, self.faults, self.opened)


@contextlib.contextmanager
def recorder_faults(router: Router, faults: Faults) -> Iterator[None]:
    recorder = router.recorder
    for name in ("answered", "streamed", "completed"):
        real = getattr(recorder, name)

        def failing(*args: object, _real=real, _name=name, **kwargs: object) -> object:
            faults.now(f"metrics {_name}")
            return _real(*args, **kwargs)

        setattr(recorder, name, failing)
    yield


async def one_request(app, faults: Faults, stream: bool, told: asyncio.Event) -> None:
    """One chat completion through the ASGI app, the client's receive and send with fault points."""
    body = json.dumps(
        {"model": PACED_MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4, "stream": stream}
    ).encode()
    scope = {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/v1/chat/completions", "raw_path": b"/v1/chat/completions", "query_string": b"",
        "root_path": "", "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 4000),
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
    }  # fmt: skip
    sent_body = asyncio.Event()
    done = asyncio.Event()

    async def receive() -> dict:
        if not sent_body.is_set():
            await faults.wait("client body")
            sent_body.set()
            return {"type": "http.request", "body": body, "more_body": False}
        await done.wait()  # the client stays until the answer is complete
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        await faults.wait(f"client {message['type']}")
        if message.get("body", b"").startswith(QUEUE_COMMENT_PREFIX.encode()):
            told.set()  # the client has its place in the queue
        if message["type"] == "http.response.body" and not message.get("more_body"):
            done.set()

    await app(scope, receive, send)


async def run(upstream: PacedUpstream, faults: Faults, stream: bool, queued: bool) -> tuple[Router, Session]:
    """One request in a fresh router (a fault may mark the upstream down); afterwards, the router stopped."""
    app = create_app(Settings(FOUNDRY_LOCAL_URLS=upstream.url, UPSTREAM_MAX_CONCURRENCY=1, LOG_FORMAT="json"))
    router: Router = app.state.router
    async with app.router.lifespan_context(app):
        assert router.registry.ready
        (status,) = router.registry.statuses
        session = Session(router.session, faults)  # type: ignore[arg-type]
        router.session = session  # type: ignore[assignment]
        holder = status.slots.take() if queued else None  # the one slot busy: the request waits in the queue
        with recorder_faults(router, faults):
            told = asyncio.Event()
            request = asyncio.create_task(one_request(app, faults, stream, told))
            if holder is not None:
                # A condition on the admission object, which has no event to wait on: checked at each turn of the
                # loop (no time involved), until the request waits in the queue (a stream: and its client was told).
                while not request.done() and (status.slots.queued == 0 or (stream and not told.is_set())):  # noqa: ASYNC110
                    await asyncio.sleep(0)
                holder.release()  # the slot goes to the waiting request
            with contextlib.suppress(Injected, aiohttp.ClientError, asyncio.CancelledError):
                await request
        router.session = session.session
        return router, session


@pytest.fixture(scope="module")
def upstream() -> Iterator[PacedUpstream]:
    paced = start_paced_upstream(first_token_ms=1, token_interval_ms=1)
    yield paced
    paced.stop()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("stream", "queued"), [(True, False), (False, False), (True, True), (False, True)],
                         ids=["stream", "whole answer", "stream after a wait in the queue",
                              "whole answer after a wait in the queue"])  # fmt: skip
def test_a_fault_at_any_point_gives_the_slot_back(upstream: PacedUpstream, kind: str, stream: bool,
                                                  queued: bool) -> None:  # fmt: skip
    clean = Faults(None, kind)  # a run without a fault: the points one request meets
    asyncio.run(run(upstream, clean, stream, queued))
    covered: set[str] = set()
    for point in clean.met:
        faults = Faults(point, kind)
        router, session = asyncio.run(run(upstream, faults, stream, queued))
        (status,) = router.registry.statuses
        where = f"fault {kind} at {point}"
        assert (status.slots.in_flight, status.slots.queued) == (0, 0), where
        assert all(r.closed for r in session.opened), f"{where}: an upstream connection left open"
        if point in faults.met:  # a stream may come in fewer chunks this time
            covered.add(point[0])
    expected = {"client body", "upstream post", "upstream headers", "client http.response.start",
                "client http.response.body", "metrics answered"}  # fmt: skip
    expected |= {"upstream chunk", "metrics streamed"} if stream else {"upstream read", "metrics completed"}
    assert expected <= covered, covered
