"""One client request on its way through the router, and what is said about it: the headers that tell the client
where it ran, the one log line and the count of each answer."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import structlog

from foundry_common.protocol import (
    FAILED_OVER_HEADER,
    MAX_TOKENS_HEADER,
    MODEL_HEADER,
    ROUTE_HEADER,
    ROUTE_REASON_HEADER,
    UPSTREAM_HEADER,
    UPSTREAM_KIND_HEADER,
)
from foundry_router.headers import header_text
from foundry_router.operations import CHAT, Operation
from foundry_router.routing import Target, describe_choice
from foundry_router.service import Router
from foundry_router.upstreams import UpstreamStatus

log = structlog.get_logger("foundry_router.proxy")


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
    operation: Operation = CHAT
    unserved: list[str] = field(default_factory=list)  # upstreams that said they do not serve the route, and how

    @property
    def stream(self) -> bool:
        return self.payload.get("stream") is True


def where_it_ran(exchange: Exchange, target: Target, status: UpstreamStatus, candidates: int) -> dict[str, str]:
    headers = {
        UPSTREAM_HEADER: header_text(target.upstream.name),
        UPSTREAM_KIND_HEADER: "cloud" if target.upstream.cloud else "local",
        MODEL_HEADER: header_text(target.model),
        ROUTE_HEADER: exchange.route,
        ROUTE_REASON_HEADER: header_text(describe_choice(target, status, candidates)),
        "x-request-id": exchange.request_id,
    }
    if exchange.failed:
        headers[FAILED_OVER_HEADER] = header_text("; ".join(exchange.failed))
    if exchange.fitted_max_tokens is not None:
        headers[MAX_TOKENS_HEADER] = str(exchange.fitted_max_tokens)
    return headers


def record_decision(router: Router, exchange: Exchange, target: Target) -> None:
    reason = "failover" if exchange.failed else target.reason_code
    router.recorder.decisions.labels(target.upstream.name, exchange.route, reason).inc()


def finish(router: Router, exchange: Exchange, target: Target | None, code: int | str, **fields: object) -> None:
    """Count the answer and write the request's one log line."""
    upstream = target.upstream.name if target else ""
    router.recorder.answered(exchange.model, upstream, code)
    log.info(
        exchange.operation.log_event,
        request_id=exchange.request_id,
        model=exchange.model,
        upstream=upstream or None,
        route=exchange.route,
        reason=target.reason_code if target else None,
        status=code,
        stream=exchange.stream,
        duration_ms=round((time.perf_counter() - exchange.started) * 1000, 2),
        failed_over=exchange.failed or None,
        unserved=exchange.unserved or None,
        max_tokens_fitted=exchange.fitted_max_tokens,
        **{k: v for k, v in fields.items() if v is not None},
    )
