"""One stream relayed from an upstream to the client: bytes in whole lines, read only where it must be (the
watcher's byte scans for the first token, the usage and the end), and an error event when the upstream breaks.

The relay holds the request's slot (admission.Lease) from the moment it is built: `close` gives it back once,
whatever happens (done, broken, or a client that left before the first chunk was even asked for).
"""

from __future__ import annotations

import asyncio

import aiohttp
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from foundry_common.relay import WholeLines, error_event
from foundry_common.sse import StreamWatcher
from foundry_router.admission import Lease
from foundry_router.capacity import decode_rate
from foundry_router.exchange import Exchange, finish
from foundry_router.failures import transport_failure
from foundry_router.routing import Target
from foundry_router.service import Router
from foundry_router.upstreams import UpstreamStatus


class Relay:
    """The upstream's stream, passed on as it comes; `close` settles it (slot, connection, metrics, log) once."""

    def __init__(self, router: Router, exchange: Exchange, target: Target, status: UpstreamStatus, lease: Lease,
                 response: aiohttp.ClientResponse, head: bytes) -> None:  # fmt: skip
        self.router, self.exchange, self.target, self.status, self.lease = router, exchange, target, status, lease
        self.response, self.head = response, head
        self.watcher = StreamWatcher(exchange.started)
        self.closed = False
        self.broken_detail = ""

    async def pump(self, send: Send) -> None:
        """The stream to the client: each chunk's whole lines as one ASGI message, the error event if it breaks."""
        error, code = "", 200
        lines, watcher, iterator = WholeLines(), self.watcher, self.response.content.iter_any()
        try:
            chunk = self.head
            while True:
                if whole := lines.push(chunk):
                    watcher.feed(whole)
                    await send({"type": "http.response.body", "body": whole, "more_body": True})
                try:
                    chunk = await anext(iterator)
                except StopAsyncIteration:
                    break
            if rest := lines.rest():  # an upstream that ends without a last newline
                watcher.feed(rest)
                await send({"type": "http.response.body", "body": rest, "more_body": True})
        except (aiohttp.ClientError, TimeoutError) as exc:
            error, code = self.broken(exc)
            message = f"{self.target.upstream.name} {self.broken_detail} after part of the answer."
            await send({"type": "http.response.body", "body": lines.then(error_event(message, "upstream_failed")),
                        "more_body": True})  # fmt: skip
        except asyncio.CancelledError:
            error, code = "cancelled", "cancelled"  # the client left: closing the response stops the generation
            raise
        finally:
            self.close(error, code)
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    def broken(self, exc: BaseException) -> tuple[str, int]:
        """The upstream cut the stream: its own failure, so it is marked down."""
        failure = transport_failure(exc, self.router.settings.request_timeout_seconds)
        self.broken_detail = failure.detail
        self.router.registry.mark_failed(self.target.upstream, failure.detail)
        return failure.kind, 502

    def close(self, error: str = "cancelled", code: int | str = "cancelled") -> None:
        if self.closed:
            return
        self.closed = True
        # The slot and the connection first: a failure in the bookkeeping below must not keep them.
        self.response.close()
        self.lease.release()
        if code == "cancelled" and self.watcher.done:
            # A client that leaves once it has read [DONE] (the openai SDKs do) had the whole answer, whichever of
            # the relay and the response noticed first.
            error, code = "", 200
        exchange, target, watcher = self.exchange, self.target, self.watcher
        ttft = self.router.recorder.streamed(exchange.operation.name, target.model, target.upstream.name, watcher,
                                             error)  # fmt: skip
        if ttft is not None:
            self.status.observe_ttft(ttft)
        self.report_capacity()
        ttft_ms = round(ttft * 1000, 2) if ttft is not None else None
        finish(self.router, exchange, target, code, error=error or None, tokens=watcher.output_tokens, ttft_ms=ttft_ms)

    def report_capacity(self) -> None:
        """What this stream measured, for the upstream's learned concurrency limit (capacity.py)."""
        watcher, lease = self.watcher, self.lease
        first = watcher.first_token_at
        ttft = max(0.0, first - lease.taken_at) if first is not None else None
        lease.report(decode_rate(watcher.output_tokens, first, watcher.last_token_at), ttft)


async def client_gone(receive: Receive) -> None:
    """Returns when the client has gone (its connection closed)."""
    while (await receive())["type"] != "http.disconnect":
        pass


class RelayResponse(Response):
    """The client's response for a relayed stream. Plain ASGI rather than Starlette's StreamingResponse: each chunk
    goes from the upstream's reader straight to `send`, with no generator or task group between (the relay runs for
    every token of every stream). The relay is closed when the response ends, however it ends."""

    media_type = "text/event-stream"

    def __init__(self, relay: Relay, headers: dict[str, str]) -> None:  # as StreamingResponse: no content-length
        self.relay, self.status_code, self.background = relay, 200, None
        self.init_headers(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            await relay_to_client(self.relay, receive, send)
        finally:
            self.relay.close()


async def relay_to_client(relay: Relay, receive: Receive, send: Send) -> None:
    """The relay's stream after the response has started, until it ends or the client leaves; the relay closed."""
    try:
        pump = asyncio.ensure_future(relay.pump(send))
        watch = asyncio.ensure_future(client_gone(receive))
        try:
            await asyncio.wait((pump, watch), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (pump, watch):
                task.cancel()
            await asyncio.gather(pump, watch, return_exceptions=True)
        if pump.done() and not pump.cancelled() and pump.exception() is not None:
            raise pump.exception()  # type: ignore[misc]
    finally:
        relay.close()
