"""A request's visible place in the queue: what it is told while it waits for a slot (foundry_common.protocol's
queue comment and headers).

A stream that must wait starts its response at once (200, text/event-stream) and gets an SSE comment with its place
(requests ahead, expected wait) now, at each change, and every HEARTBEAT_SECONDS; SSE clients skip comments, so the
openai SDKs and Open WebUI read the stream as before. The price of the early start: the status line is gone, so
whatever goes wrong afterwards (the queue's timeout, no upstream, a refusal, a bug) reaches the client as one OpenAI
error event that ends the stream, and where it ran comes as one more comment (protocol.where_comment) rather than
headers. A whole (non-streamed) answer that waited has its place and wait as headers; requests that never wait are
unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from foundry_common.chat_request import RequestError
from foundry_common.protocol import QUEUE_AHEAD_HEADER, QUEUE_WAIT_HEADER, queue_comment, where_comment
from foundry_common.relay import error_event
from foundry_common.server import internal_error
from foundry_router.admission import Place
from foundry_router.exchange import Exchange, finish
from foundry_router.routing import Target
from foundry_router.service import Router
from foundry_router.streaming import RelayResponse, client_gone, relay_to_client
from foundry_router.upstreams import UpstreamStatus

log = structlog.get_logger("foundry_router.proxy")

HEARTBEAT_SECONDS = 3.0  # a comment at least this often while waiting: proxies and clients see a live stream


@dataclass
class Queued:
    """A place taken in the shortest queue (no candidate had a free slot): what `admit` waits on."""

    target: Target
    status: UpstreamStatus
    place: Place
    ordered: list[Target]
    by_upstream: dict


def expected_wait(status: UpstreamStatus, ahead: int) -> float | None:
    """Seconds until this place gets a slot: the slots' estimate from the measured drain rate when there is one;
    else a guess from the upstream's recent time to first token (a slot frees about every 2 × TTFT / cap, as the
    static Retry-After guessed); None before anything was measured (the client shows no time rather than a wrong
    one)."""
    measured = status.slots.expected_wait_seconds(ahead)
    if measured is not None:
        return measured
    if status.ttft_seconds is None:
        return None
    return (ahead + 1) * 2 * status.ttft_seconds / max(1, status.slots.cap)


class Waiting:
    """One request's wait: the place it holds now (a failover may move it to another queue), its number ahead when
    it first joined, and how long it waited in all."""

    def __init__(self) -> None:
        self.queued: Queued | None = None
        self.joined_ahead: int | None = None
        self.joined_at = 0.0
        self.waited_seconds: float | None = None
        self._wake: asyncio.Event | None = None

    def follow(self, queued: Queued) -> None:
        self.queued = queued
        if self.joined_ahead is None:
            self.joined_ahead, self.joined_at = queued.place.ahead, time.perf_counter()
        if self._wake is not None:
            self._wake.set()  # a notice waiting on the old queue: look at the new one

    def admitted(self) -> None:
        if self.joined_ahead is not None:
            self.waited_seconds = time.perf_counter() - self.joined_at

    def comment(self) -> bytes | None:
        """The place as a queue comment; None once it left its queue (a slot, or on its way to another)."""
        queued = self.queued
        if queued is None or queued.place.future.done():
            return None
        ahead = queued.place.ahead
        return queue_comment(ahead, expected_wait(queued.status, ahead))

    async def change(self, within: float) -> None:
        """Returns at the next change in the queue this request waits in (or a move to another), or `within` s."""
        assert self.queued is not None
        self._wake = self.queued.place.slots.moved()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(within):
                await self._wake.wait()

    def headers(self) -> dict[str, str]:
        """For a whole answer that waited: its place when it joined, and the time it waited."""
        if self.joined_ahead is None or self.waited_seconds is None:
            return {}
        return {QUEUE_AHEAD_HEADER: str(self.joined_ahead), QUEUE_WAIT_HEADER: str(round(self.waited_seconds * 1000))}


async def announce(waiting: Waiting, send: Send) -> None:
    """The place to the client, now, at each change and as a heartbeat, until cancelled (the wait is over)."""
    last: bytes | None = None
    heartbeat_at = 0.0
    while True:
        comment = waiting.comment()
        if comment is not None and (comment != last or time.monotonic() >= heartbeat_at):
            await send({"type": "http.response.body", "body": comment, "more_body": True})
            last, heartbeat_at = comment, time.monotonic() + HEARTBEAT_SECONDS
        # Out of the queue (a slot, or on its way to another queue, whose `follow` wakes this): nothing to tell.
        await waiting.change(HEARTBEAT_SECONDS if comment is None else max(0.0, heartbeat_at - time.monotonic()))


class QueuedStream(Response):
    """The response of a stream that waits in the queue: started at once, the place told while it waits, then the
    answer relayed as any other (failover to the next candidate still possible until the first event).

    The place is taken (joined) before this response runs; `answering` waits on it and goes on as `forward` does.
    The slot is never left behind: the first place is left if the wait never began, a relay that this response
    does not run is closed when both it and the answering task are over, the one it runs when the relay ends."""

    media_type = "text/event-stream"

    def __init__(self, router: Router, exchange: Exchange, waiting: Waiting,
                 answering: Callable[[], Awaitable[Response]], headers: dict[str, str]) -> None:  # fmt: skip
        self.router, self.exchange, self.waiting, self.answering = router, exchange, waiting, answering
        assert waiting.queued is not None
        self.first_place = waiting.queued.place
        self.status_code, self.background = 200, None
        self.answer: asyncio.Future[Response] | None = None
        self.over = self.relay_taken = False
        self.init_headers({**headers, QUEUE_AHEAD_HEADER: str(waiting.joined_ahead)})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.answer = answer = asyncio.ensure_future(self.answering())
        answer.add_done_callback(self.close_untaken_relay)
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            if await self.until_answered(receive, send):
                await self.deliver(answer, receive, send)
            else:
                finish(self.router, self.exchange, None, "cancelled", error="cancelled")  # the client left
        finally:
            self.over = True
            self.first_place.leave()  # a no-op once the wait began: `Slots.wait` takes it or leaves it
            self.close_untaken_relay()
            if not answer.done():
                answer.cancel()
                with contextlib.suppress(BaseException):
                    await answer

    async def until_answered(self, receive: Receive, send: Send) -> bool:
        """Tells the place until the answering task is done (True) or the client has left (False)."""
        assert self.answer is not None
        notices = asyncio.ensure_future(announce(self.waiting, send))
        watch = asyncio.ensure_future(client_gone(receive))
        try:
            await asyncio.wait((self.answer, watch, notices), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (notices, watch):
                task.cancel()
            await asyncio.gather(notices, watch, return_exceptions=True)
        if notices.done() and not notices.cancelled() and notices.exception() is not None:
            raise notices.exception()  # type: ignore[misc]  # the client's send failed
        return self.answer.done()

    async def deliver(self, answer: asyncio.Future[Response], receive: Receive, send: Send) -> None:
        """The answer after the early start: the relayed stream, or one error event in place of an error response."""
        try:
            response = answer.result()
        except RequestError as error:  # the router's refusal: a queue timeout, no upstream left, none answered
            finish(self.router, self.exchange, None, error.status, error=error.code, message=error.message)
            await self.end(send, b"data: " + json.dumps(json.loads(error.body)).encode() + b"\n\n")
            return
        except Exception as exc:  # a bug: still an answer in the OpenAI shape, counted and logged
            log.exception("router_failed", request_id=self.exchange.request_id)
            finish(self.router, self.exchange, None, 500, error="internal_error")
            error = internal_error("router", self.exchange.request_id, exc)
            await self.end(send, error_event(error.message, error.code))
            return
        if not isinstance(response, RelayResponse):  # the upstream refused the request itself (already counted)
            await self.end(send, refusal_event(response.body))
            return
        self.relay_taken = True
        try:
            await send({"type": "http.response.body", "body": where_comment(response.headers), "more_body": True})
        except BaseException:
            response.relay.close()
            raise
        await relay_to_client(response.relay, receive, send)

    def close_untaken_relay(self, _done: object = None) -> None:
        """Once both this response and the answering task are over, a relay it built and nobody ran is closed."""
        answer = self.answer
        if not self.over or self.relay_taken or answer is None or not answer.done() or answer.cancelled():
            return
        if answer.exception() is None and isinstance(response := answer.result(), RelayResponse):
            response.relay.close()

    @staticmethod
    async def end(send: Send, event: bytes) -> None:
        await send({"type": "http.response.body", "body": event, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def refusal_event(body: bytes) -> bytes:
    """An upstream's refusal (an OpenAI error body) as the stream's error event, on one line."""
    try:
        event = json.loads(body)
    except ValueError:
        event = None
    if not isinstance(event, dict) or not isinstance(event.get("error"), dict):
        return error_event(body.decode("utf-8", "replace")[:1000] or "The upstream refused the request.", "refused")
    return b"data: " + json.dumps(event).encode() + b"\n\n"
