"""Forwarding one chat request: take a slot on the least busy upstream, fail over before the first byte,
relay the answer as it comes, and say where it ran.

Before the first byte reaches the client any failure is recoverable: the request moves to the next
candidate. After it, the client already holds part of an answer, so a failure ends the stream with an
error event (the OpenAI shape) after the partial answer rather than a connection that just stops.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import structlog
from starlette.responses import Response, StreamingResponse

from foundry_common.chat_request import RequestError
from foundry_common.sse import StreamWatcher
from foundry_router import fitting
from foundry_router.admission import UpstreamGone
from foundry_router.headers import header_text, to_client, to_upstream
from foundry_router.routing import Target, describe_choice, least_busy
from foundry_router.service import Router
from foundry_router.upstreams import UpstreamStatus

log = structlog.get_logger("foundry_router.proxy")

FIRST_EVENT_LIMIT = 65536  # bytes read for a stream's first event before relaying as it is
RETRY_STATUSES = {404, 408, 429}
STALE_CONNECTION = (
    aiohttp.ServerDisconnectedError,
    aiohttp.ClientOSError,
)  # worth another upstream: the model moved, it is slow, or it is full


class ClientError(RequestError):
    """An answer for the client, with extra headers (e.g. Retry-After)."""

    def __init__(self, status: int, message: str, code: str, error_type: str = "invalid_request_error",
                 headers: dict[str, str] | None = None) -> None:  # fmt: skip
        super().__init__(status, message, code, error_type)
        self.headers = headers or {}


# What to do about a failure, said once in the final refusal when no upstream could answer.
ADVICE = {
    "timeout": "If it is just slow, raise REQUEST_TIMEOUT_SECONDS.",
    "connection": "Check that it is running (`docker compose ps`, or start Foundry Local on the host).",
    "other": "Try again; if it persists, check the upstream's log.",
}


class UpstreamFailure(Exception):
    """This upstream could not answer; the next one may."""

    def __init__(self, detail: str, kind: str, mark_down: bool) -> None:
        super().__init__(detail)
        self.detail, self.kind, self.mark_down = detail, kind, mark_down


@dataclass
class Exchange:
    """One client request on its way through the router."""

    payload: dict
    model: str
    route: str
    request_id: str
    client_headers: list[tuple[str, str]]
    fitted_max_tokens: int | None = None
    started: float = field(default_factory=time.perf_counter)
    failed: list[str] = field(default_factory=list)
    advice: list[str] = field(default_factory=list)  # what to do about each failure, for the final refusal

    @property
    def stream(self) -> bool:
        return self.payload.get("stream") is True


async def forward(router: Router, exchange: Exchange, targets: list[Target]) -> Response:
    remaining = list(targets)
    while remaining:
        target, status, candidates = await admit(router, exchange, remaining)
        try:
            return await answer_from(router, exchange, target, status, candidates)
        except UpstreamFailure as failure:
            status.slots.release()
            remaining.remove(target)
            note_failure(router, exchange, target, status, failure)
    detail = "; ".join(exchange.failed)
    advice = " ".join(dict.fromkeys(exchange.advice))
    raise ClientError(502, f"No upstream could answer: {detail}. {advice}".strip(), "upstreams_failed", "server_error")


def note_failure(router: Router, exchange: Exchange, target: Target, status: UpstreamStatus,
                 failure: UpstreamFailure) -> None:  # fmt: skip
    name = target.upstream.name
    exchange.failed.append(f"{name} {failure.detail}")
    exchange.advice.append(ADVICE.get(failure.kind, ADVICE["other"]))
    router.recorder.failovers.labels(name).inc()
    router.recorder.duration.labels("chat", target.model, name, failure.kind).observe(
        time.perf_counter() - exchange.started
    )
    log.warning("upstream_failed_before_first_byte", upstream=name, error=failure.detail)
    if failure.mark_down:
        router.registry.mark_failed(target.upstream, failure.detail)
    else:
        status.next_probe_at = 0.0  # its model list may be stale: look again now
        router.registry.wake()


async def admit(router: Router, exchange: Exchange, remaining: list[Target]) -> tuple[Target, UpstreamStatus, int]:
    """A slot on the least busy candidate, waiting in the shortest queue when every one is full."""
    settings = router.settings
    while True:
        by_upstream = {s.upstream: s for s in router.registry.statuses}
        ordered = [t for t in least_busy(remaining, by_upstream) if t.upstream in by_upstream]
        if not ordered:
            raise ClientError(503, "The upstreams went away while the request waited.", "no_upstream", "server_error")
        for target in ordered:
            status = by_upstream[target.upstream]
            if status.slots.has_room:
                status.slots.take()
                return target, status, len(ordered)
        open_queues = [t for t in ordered if not by_upstream[t.upstream].slots.queue_full]
        if not open_queues:
            raise queue_refusal(router, exchange, "queue_full", ordered, by_upstream)
        target = min(open_queues, key=lambda t: by_upstream[t.upstream].slots.queued)
        status = by_upstream[target.upstream]
        try:
            async with asyncio.timeout(settings.queue_timeout_seconds):
                await status.slots.wait()
        except TimeoutError:
            raise queue_refusal(router, exchange, "queue_timeout", ordered, by_upstream) from None
        except UpstreamGone as gone:
            exchange.failed.append(str(gone))
            remaining.remove(target)
            if not remaining:
                raise ClientError(503, f"No upstream could answer: {gone}.", "no_upstream", "server_error") from None
            continue
        return target, status, len(ordered)


def queue_refusal(router: Router, exchange: Exchange, reason: str, ordered: list[Target],
                  by_upstream: dict) -> ClientError:  # fmt: skip
    router.recorder.rejections.labels(exchange.model, reason).inc()
    # A guess at when a slot frees: the recent time to first token of the candidates, at least a second.
    ttfts = [by_upstream[t.upstream].ttft_seconds or 1.0 for t in ordered]
    retry_after = max(1, min(60, math.ceil(min(ttfts) * 2)))
    if reason == "queue_full":
        message = (
            f"Every upstream serving '{exchange.model}' is busy and its queue is full "
            f"({len(ordered)} upstream(s), UPSTREAM_MAX_CONCURRENCY and UPSTREAM_QUEUE_SIZE): retry after "
            f"{retry_after} s."
        )
    else:
        message = (
            f"The request waited {router.settings.queue_timeout_seconds:g} s (QUEUE_TIMEOUT_SECONDS) for a free "
            f"upstream serving '{exchange.model}': retry after {retry_after} s."
        )
    return ClientError(429, message, reason, "rate_limit_error", {"retry-after": str(retry_after)})


async def answer_from(router: Router, exchange: Exchange, target: Target, status: UpstreamStatus,
                      candidates: int) -> Response:  # fmt: skip
    """The upstream's answer as the client's response; UpstreamFailure if it fails before the first byte."""
    response = await send(router, exchange, target)
    if response.status >= 400:
        body = await read_or_fail(response)
        room = refitted_room(exchange, response.status, body)
        if room is not None:
            # We chose max_tokens and the upstream says exactly how much fits: one more try with that.
            exchange.fitted_max_tokens = exchange.payload["max_tokens"] = room
            response = await send(router, exchange, target)
            if response.status >= 400:
                body = await read_or_fail(response)
    if response.status >= 400:
        raise_for_status(response.status, body)
        return finish_refusal(router, exchange, target, status, response, body)
    ours = where_it_ran(exchange, target, status, candidates)
    record_decision(router, exchange, target)
    if not exchange.stream:
        body = await read_or_fail(response)
        status.slots.release()
        usage = usage_of(body)
        router.recorder.completed(target.model, target.upstream.name, exchange.started, usage)
        finish(router, exchange, target, 200, tokens=(usage or {}).get("completion_tokens"))
        return Response(body, status_code=200, headers=to_client(response.headers, ours),
                        media_type="application/json")  # fmt: skip
    head = await first_event(response)
    if error := stream_error(head):
        response.close()
        raise UpstreamFailure(f"reported an error before the first token: {error}", "stream_error", False)
    headers = to_client(response.headers, {**ours, "cache-control": "no-cache", "x-accel-buffering": "no"})
    return RelayResponse(Relay(router, exchange, target, status, response, head), headers)


async def send(router: Router, exchange: Exchange, target: Target) -> aiohttp.ClientResponse:
    payload = exchange.payload if target.model == exchange.model else {**exchange.payload, "model": target.model}
    headers = to_upstream(exchange.client_headers, target.upstream.api_key, exchange.request_id)
    assert router.session is not None
    url, body = f"{target.upstream.base_url}/chat/completions", json.dumps(payload).encode()
    try:
        try:
            return await router.session.post(url, data=body, headers=headers)
        except STALE_CONNECTION as exc:
            if isinstance(exc, aiohttp.ClientConnectorError):
                raise  # refused or unreachable: no connection was ever made
            # A kept-alive connection the upstream closed as we reused it: nothing was answered, so one more
            # try on a fresh connection is safe. A stopped upstream refuses that one outright.
            return await router.session.post(url, data=body, headers=headers)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise transport_failure(exc, router.settings.request_timeout_seconds) from exc


async def read_or_fail(response: aiohttp.ClientResponse) -> bytes:
    try:
        return await response.read()
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise transport_failure(exc, 0) from exc
    finally:
        response.release()


def transport_failure(exc: BaseException, timeout: float) -> UpstreamFailure:
    if isinstance(exc, TimeoutError):
        return UpstreamFailure(f"sent nothing for {timeout:g} s (REQUEST_TIMEOUT_SECONDS)", "timeout", True)
    return UpstreamFailure(f"could not be reached or closed the connection ({type(exc).__name__})", "connection", True)


def raise_for_status(code: int, body: bytes) -> None:
    """5xx and the retryable 4xx move the request on; other 4xx are the client's to fix (returned as they are)."""
    if code >= 500 or code in RETRY_STATUSES:
        message = error_message(body)
        raise UpstreamFailure(f"answered HTTP {code}: {message}", f"http_{code}", code >= 500)


def refitted_room(exchange: Exchange, code: int, body: bytes) -> int | None:
    if code != 400 or exchange.fitted_max_tokens is None:
        return None
    room = fitting.room_from_refusal(error_message(body))
    return room if room is not None and room < exchange.fitted_max_tokens else None


def finish_refusal(router: Router, exchange: Exchange, target: Target, status: UpstreamStatus,
                   response: aiohttp.ClientResponse, body: bytes) -> Response:  # fmt: skip
    """The upstream refused the request itself (a 4xx): the client gets that answer, and where it came from."""
    status.slots.release()
    ours = where_it_ran(exchange, target, status, 1)
    router.recorder.completed(target.model, target.upstream.name, exchange.started, None, f"http_{response.status}")
    finish(router, exchange, target, response.status, error=error_message(body))
    return Response(body, status_code=response.status, headers=to_client(response.headers, ours))


# The first event that carries generated text (or the end): until it arrives, nothing the client could show
# has been sent, so an upstream that dies before it is failed over like one that never answered.
_COMMITTING = re.compile(rb'"content"\s*:\s*"(?!")|"finish_reason"\s*:\s*"|\[DONE\]|"error"')


async def first_event(response: aiohttp.ClientResponse) -> bytes:
    """The stream up to the end of its first event with text (or its end, or FIRST_EVENT_LIMIT bytes)."""
    head = b""
    try:
        async for chunk in response.content.iter_any():
            head += chunk
            complete = head.rpartition(b"\n\n")[0]
            if _COMMITTING.search(complete) or len(head) >= FIRST_EVENT_LIMIT:
                return head
    except (aiohttp.ClientError, TimeoutError) as exc:
        response.close()
        raise transport_failure(exc, 0) from exc
    if not head:
        response.close()
        raise UpstreamFailure("ended the stream before its first event", "stream_error", True)
    return head


def stream_error(head: bytes) -> str:
    """The message of an error event among the events before the first text, if the upstream sent one."""
    for line in head.splitlines():
        if not line.startswith(b"data:") or b'"error"' not in line:
            continue
        try:
            error = json.loads(line[5:]).get("error")
        except (ValueError, AttributeError):
            continue
        if isinstance(error, dict):
            return str(error.get("message") or error)
        if error:
            return str(error)
    return ""


class WholeLines:
    """Passes a byte stream on in whole lines only. An upstream cut mid-line (killed, its network gone) then never
    leaves half an event for the client, which would run it into the error event that follows (as one line that is
    not JSON); the half line is dropped instead. Costs nothing when chunks end at line ends, as SSE servers send."""

    def __init__(self) -> None:
        self.partial = b""
        self.sent_tail = b"\n\n"  # the last two bytes passed on: does an event of ours start on a fresh one?

    def push(self, data: bytes) -> bytes:
        data = self.partial + data
        end = data.rfind(b"\n") + 1
        whole, self.partial = data[:end], data[end:]
        if whole:
            self.sent_tail = (self.sent_tail + whole)[-2:]
        return whole

    def then(self, event: bytes) -> bytes:
        """`event` (a whole SSE event of ours) after what was passed on, ending an event left open first."""
        self.partial = b""
        return event if self.sent_tail == b"\n\n" else b"\n" + event


class Relay:
    """The upstream's stream, passed on chunk by chunk; `close` settles it once whatever happens (done, broken,
    or a client that left before the first chunk was even asked for, when the generator never runs)."""

    def __init__(self, router: Router, exchange: Exchange, target: Target, status: UpstreamStatus,
                 response: aiohttp.ClientResponse, head: bytes) -> None:  # fmt: skip
        self.router, self.exchange, self.target, self.status = router, exchange, target, status
        self.response, self.head = response, head
        self.watcher = StreamWatcher(exchange.started)
        self.closed = False

    async def chunks(self) -> AsyncIterator[bytes]:
        error, code = "", 200
        lines = WholeLines()
        try:
            self.watcher.feed(self.head)
            if whole := lines.push(self.head):
                yield whole
            async for chunk in self.response.content.iter_any():
                self.watcher.feed(chunk)
                if whole := lines.push(chunk):
                    yield whole
            if lines.partial:  # an upstream that ends without a last newline
                yield lines.push(b"\n")
        except (aiohttp.ClientError, TimeoutError) as exc:
            failure = transport_failure(exc, self.router.settings.request_timeout_seconds)
            error, code = failure.kind, 502
            self.router.registry.mark_failed(self.target.upstream, failure.detail)
            message = f"{self.target.upstream.name} {failure.detail} after part of the answer."
            event = {"error": {"message": message, "type": "server_error", "code": "upstream_failed"}}
            yield lines.then(f"data: {json.dumps(event)}\n\n".encode())
        except (asyncio.CancelledError, GeneratorExit):
            error, code = "cancelled", "cancelled"  # the client left: closing the response stops the generation
            raise
        finally:
            self.close(error, code)

    def close(self, error: str = "cancelled", code: int | str = "cancelled") -> None:
        if self.closed:
            return
        self.closed = True
        if code == "cancelled" and self.watcher.done:
            # A client that leaves once it has read [DONE] (the openai SDKs do) had the whole answer, whichever of
            # the generator and the response noticed first.
            error, code = "", 200
        self.response.close()
        self.status.slots.release()
        ttft = self.router.recorder.streamed(self.target.model, self.target.upstream.name, self.watcher, error)
        if ttft is not None:
            self.status.observe_ttft(ttft)
        ttft_ms = round(ttft * 1000, 2) if ttft is not None else None
        finish(self.router, self.exchange, self.target, code, error=error or None,
               tokens=self.watcher.output_tokens, ttft_ms=ttft_ms)  # fmt: skip


class RelayResponse(StreamingResponse):
    def __init__(self, relay: Relay, headers: dict[str, str]) -> None:
        super().__init__(relay.chunks(), status_code=200, headers=headers, media_type="text/event-stream")
        self.relay = relay

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.relay.close()


def where_it_ran(exchange: Exchange, target: Target, status: UpstreamStatus, candidates: int) -> dict[str, str]:
    headers = {
        "x-foundry-upstream": header_text(target.upstream.name),
        "x-foundry-upstream-kind": "cloud" if target.upstream.cloud else "local",
        "x-foundry-model": header_text(target.model),
        "x-foundry-route": exchange.route,
        "x-foundry-route-reason": header_text(describe_choice(target, status, candidates)),
        "x-request-id": exchange.request_id,
    }
    if exchange.failed:
        headers["x-foundry-failed-over"] = header_text("; ".join(exchange.failed))
    if exchange.fitted_max_tokens is not None:
        headers["x-foundry-max-tokens"] = str(exchange.fitted_max_tokens)
    return headers


def record_decision(router: Router, exchange: Exchange, target: Target) -> None:
    reason = "failover" if exchange.failed else target.reason_code
    router.recorder.decisions.labels(target.upstream.name, exchange.route, reason).inc()


def finish(router: Router, exchange: Exchange, target: Target | None, code: int | str, **fields: object) -> None:
    upstream = target.upstream.name if target else ""
    router.recorder.answered(exchange.model, upstream, code)
    log.info(
        "chat_completion",
        request_id=exchange.request_id,
        model=exchange.model,
        upstream=upstream or None,
        route=exchange.route,
        reason=target.reason_code if target else None,
        status=code,
        stream=exchange.stream,
        duration_ms=round((time.perf_counter() - exchange.started) * 1000, 2),
        failed_over=exchange.failed or None,
        max_tokens_fitted=exchange.fitted_max_tokens,
        **{k: v for k, v in fields.items() if v is not None},
    )


def error_message(body: bytes) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace").strip()[:300] or "no details"
    if isinstance(data, dict):
        error = data.get("error", data)
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])[:1000]
        if isinstance(error, str):
            return error[:1000]
    return json.dumps(data)[:300]


def usage_of(body: bytes) -> dict | None:
    try:
        usage = json.loads(body).get("usage")
    except (ValueError, AttributeError):
        return None
    return usage if isinstance(usage, dict) else None
