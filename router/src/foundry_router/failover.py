"""Which upstream answers: a slot (a Lease) on the least busy candidate, waiting in the shortest queue when every
one is full, and the next candidate when one fails before the first byte.

Before the first byte reaches the client any failure of the upstream is recoverable: the request moves to the next
candidate. After it, the client already holds part of an answer, so a failure ends the stream with an error event
(streaming.py). A refusal of the request is the client's answer, from the first upstream that gives it
(failures.py).
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
import time

import aiohttp
import structlog
from starlette.responses import Response

from foundry_common.protocol import error_body, error_message
from foundry_common.relay import stream_error
from foundry_router import fitting
from foundry_router.admission import Lease, UpstreamGone
from foundry_router.errors import ClientError, no_answer
from foundry_router.exchange import Exchange, finish, record_decision, where_it_ran
from foundry_router.failures import ADVICE, UpstreamFailure, blames_request, failure_of, stream_failure
from foundry_router.headers import to_client
from foundry_router.operations import remember
from foundry_router.routing import Target, least_busy
from foundry_router.service import Router
from foundry_router.streaming import Relay, RelayResponse
from foundry_router.upstream_call import read_body, read_first_event, send
from foundry_router.upstreams import UpstreamStatus
from foundry_router.waiting import Queued, QueuedStream, Waiting

log = structlog.get_logger("foundry_router.proxy")

STREAM_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}
Admitted = tuple[Target, UpstreamStatus, Lease, int]  # where, its status, the slot, how many candidates there were


async def forward(router: Router, exchange: Exchange, targets: list[Target]) -> Response:
    """The answer of the first candidate that gives one; a ClientError when none could. A stream that must wait for
    a slot starts at once and is told its place while it waits (waiting.py); a whole answer that waited says so."""
    remaining = list(targets)
    first = admit_now(router, exchange, remaining)
    waiting = Waiting()
    if isinstance(first, Queued):
        waiting.follow(first)
        if exchange.stream:
            headers = {**STREAM_HEADERS, "x-request-id": exchange.request_id}
            answering = functools.partial(answer_first, router, exchange, remaining, first, waiting)
            return QueuedStream(router, exchange, waiting, answering, headers)
    response = await answer_first(router, exchange, remaining, first, waiting)
    response.headers.update(waiting.headers())
    return response


async def answer_first(router: Router, exchange: Exchange, remaining: list[Target],
                       first: Admitted | Queued | None, waiting: Waiting) -> Response:  # fmt: skip
    """The failover loop: a slot (`first` is the one already taken, or the place already held), the answer of that
    candidate, the next one when it fails before the first byte."""
    while remaining:
        target, status, lease, candidates = await admit(router, exchange, remaining, first, waiting)
        first = None
        response: Response | None = None
        try:
            response = await answer_from(router, exchange, target, status, lease, candidates)
            return response
        except UpstreamFailure as failure:
            lease.release()
            remaining.remove(target)
            note_failure(router, exchange, target, status, failure)
        finally:
            if not isinstance(response, RelayResponse):  # a relayed stream's slot is its relay's to give back
                lease.release()
    raise no_answer(exchange)


def note_failure(router: Router, exchange: Exchange, target: Target, status: UpstreamStatus,
                 failure: UpstreamFailure) -> None:  # fmt: skip
    if failure.kind == "unserved":  # not a fault of the upstream: it just does not serve this route
        exchange.unserved.append(remember(status, exchange.operation, target, failure.detail))
        return
    name = target.upstream.name
    exchange.failed.append(f"{name} {failure.detail}")
    exchange.advice.append(ADVICE.get(failure.kind, ADVICE["other"]))
    router.recorder.failovers.labels(name).inc()
    router.recorder.duration.labels(exchange.operation.name, target.model, name, failure.kind).observe(
        time.perf_counter() - exchange.started
    )
    log.warning("upstream_failed_before_first_byte", upstream=name, error=failure.detail)
    if failure.mark_down:
        router.registry.mark_failed(target.upstream, failure.detail)
    else:
        status.next_probe_at = 0.0  # its model list may be stale: look again now
        router.registry.wake()


def admit_now(router: Router, exchange: Exchange, remaining: list[Target]) -> Admitted | Queued:
    """A slot on the least busy candidate, or else a place (taken now) in the shortest queue; refused when every
    queue is full."""
    by_upstream = {s.upstream: s for s in router.registry.statuses}
    ordered = [t for t in least_busy(remaining, by_upstream) if t.upstream in by_upstream]
    if not ordered:
        raise ClientError(503, "The upstreams went away while the request waited.", "no_upstream", "server_error")
    for target in ordered:
        status = by_upstream[target.upstream]
        if status.slots.has_room:
            return target, status, status.slots.take(), len(ordered)
    open_queues = [t for t in ordered if not by_upstream[t.upstream].slots.queue_full]
    if not open_queues:
        raise queue_refusal(router, exchange, "queue_full", ordered, by_upstream)
    target = min(open_queues, key=lambda t: by_upstream[t.upstream].slots.queued)
    status = by_upstream[target.upstream]
    return Queued(target, status, status.slots.join(), ordered, by_upstream)


async def admit(router: Router, exchange: Exchange, remaining: list[Target], first: Admitted | Queued | None,
                waiting: Waiting) -> Admitted:  # fmt: skip
    """A slot: `first` (a slot already taken, or the place to wait in), else a new try; `waiting` follows the places
    it holds."""
    while True:
        step = first if first is not None else admit_now(router, exchange, remaining)
        first = None
        if not isinstance(step, Queued):
            return step
        waiting.follow(step)
        try:
            async with asyncio.timeout(router.settings.queue_timeout_seconds):
                lease = await step.status.slots.wait(step.place)
        except TimeoutError:
            raise queue_refusal(router, exchange, "queue_timeout", step.ordered, step.by_upstream) from None
        except UpstreamGone as gone:
            exchange.failed.append(str(gone))
            remaining.remove(step.target)
            if not remaining:
                raise ClientError(503, f"No upstream could answer: {gone}.", "no_upstream", "server_error") from None
            continue
        waiting.admitted()
        return step.target, step.status, lease, len(step.ordered)


def queue_refusal(router: Router, exchange: Exchange, reason: str, ordered: list[Target],
                  by_upstream: dict) -> ClientError:  # fmt: skip
    router.recorder.rejections.labels(exchange.model, reason).inc()
    retry_after = max(1, min(60, math.ceil(retry_after_seconds([by_upstream[t.upstream] for t in ordered]))))
    if reason == "queue_full":
        message = (
            f"Every upstream serving '{exchange.model}' is busy and its queue is full "
            f"({len(ordered)} upstream(s), each at its limit (ADMISSION, at most UPSTREAM_MAX_CONCURRENCY) "
            f"with UPSTREAM_QUEUE_SIZE waiting): retry after {retry_after} s."
        )
    else:
        message = (
            f"The request waited {router.settings.queue_timeout_seconds:g} s (QUEUE_TIMEOUT_SECONDS) for a free "
            f"upstream serving '{exchange.model}': retry after {retry_after} s."
        )
    return ClientError(429, message, reason, "rate_limit_error", {"retry-after": str(retry_after)})


def retry_after_seconds(candidates: list[UpstreamStatus]) -> float:
    """When the request would have had a slot, had it joined the back of the shortest wait: from each candidate's
    measured drain rate (admission.Slots.expected_wait_seconds). Before any has measured one, a guess: twice the
    recent time to first token."""
    waits = [w for s in candidates if (w := s.slots.expected_wait_seconds(s.slots.queued)) is not None]
    if waits:
        return min(waits)
    return min(s.ttft_seconds or 1.0 for s in candidates) * 2


async def answer_from(router: Router, exchange: Exchange, target: Target, status: UpstreamStatus, lease: Lease,
                      candidates: int) -> Response:  # fmt: skip
    """The upstream's answer as the client's response; UpstreamFailure if it fails before the first byte. The
    upstream's response is closed here on every path but one: a relayed stream, whose relay closes it."""
    response, body = await ask(router, exchange, target)
    if body is not None:
        if (failure := failure_of(exchange.operation, response.status, body)) is not None:
            raise failure
        return refusal(router, exchange, target, status, response.status, response.headers, body)
    try:
        ours = where_it_ran(exchange, target, status, candidates)
        record_decision(router, exchange, target)
        if not exchange.stream:
            body = await read_body(response)
            return completed(router, exchange, target, response, body, ours)
        head = await read_first_event(response)
        if (error := stream_error(head)) is not None:
            if not blames_request(error):
                raise stream_failure(error)
            response.close()
            body = error_body(error["message"], str(error.get("code") or "invalid_request"), param=error.get("param"))
            return refusal(router, exchange, target, status, 400, {}, body)  # JSON now, not the stream's type
        relay = Relay(router, exchange, target, status, lease, response, head)
        return RelayResponse(relay, to_client(response.headers, {**ours, **STREAM_HEADERS}))
    except BaseException:
        response.close()
        raise


async def ask(router: Router, exchange: Exchange, target: Target) -> tuple[aiohttp.ClientResponse, bytes | None]:
    """The upstream's response, with its body when it is an error (read, the response released). When the router
    chose max_tokens and the upstream says exactly how much fits, one more try with that."""
    response = await send(router, exchange, target)
    if response.status < 400:
        return response, None
    body = await read_body(response)
    room = refitted_room(exchange, response.status, body)
    if room is None:
        return response, body
    exchange.fitted_max_tokens = exchange.payload["max_tokens"] = room
    response = await send(router, exchange, target)
    return response, (await read_body(response) if response.status >= 400 else None)


def refitted_room(exchange: Exchange, code: int, body: bytes) -> int | None:
    if code != 400 or exchange.fitted_max_tokens is None:
        return None
    room = fitting.room_from_refusal(body)
    return room if room is not None and room < exchange.fitted_max_tokens else None


def completed(router: Router, exchange: Exchange, target: Target, response: aiohttp.ClientResponse, body: bytes,
              ours: dict[str, str]) -> Response:  # fmt: skip
    usage = usage_of(body)
    router.recorder.completed(exchange.operation.name, target.model, target.upstream.name, exchange.started, usage)
    finish(router, exchange, target, 200, tokens=(usage or {}).get("completion_tokens"))
    return Response(body, status_code=200, headers=to_client(response.headers, ours), media_type="application/json")


def refusal(router: Router, exchange: Exchange, target: Target, status: UpstreamStatus, code: int, headers,
            body: bytes) -> Response:  # fmt: skip
    """The upstream refused the request itself: the client gets that answer, and where it came from."""
    ours = where_it_ran(exchange, target, status, 1)
    router.recorder.completed(exchange.operation.name, target.model, target.upstream.name, exchange.started, None,
                              f"http_{code}")  # fmt: skip
    finish(router, exchange, target, code, error=error_message(body))
    return Response(body, status_code=code, headers=to_client(headers, ours), media_type="application/json")


def usage_of(body: bytes) -> dict | None:
    try:
        usage = json.loads(body).get("usage")
    except (ValueError, AttributeError):
        return None
    return usage if isinstance(usage, dict) else None
