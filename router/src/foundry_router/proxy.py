"""The router's one entry point for the OpenAI operations it forwards (chat, text completion, embeddings): check
the request, plan where it may go, and hand it to the failover loop.

The jobs are in their own modules: failover.py (which upstream, slots as leases, the next candidate), upstream_call.py
(the call), failures.py (what an answer means), streaming.py (the stream relay), exchange.py (where it ran, the log
line), errors.py (the router's refusals). Only `answer` is for app.py.
"""

from __future__ import annotations

import hmac
import uuid

import structlog
from starlette.requests import Request
from starlette.responses import Response

from foundry_common.chat_request import RequestError, check_chat_request, requested_model
from foundry_common.protocol import MODELS_ROUTE, ROUTE_HEADER, ROUTES
from foundry_common.request_body import read_payload
from foundry_common.server import internal_error
from foundry_router import fitting
from foundry_router.errors import ClientError, error_response, no_answer
from foundry_router.exchange import Exchange, finish
from foundry_router.failover import forward
from foundry_router.operations import Operation, skip_unserved
from foundry_router.routing import plan_route
from foundry_router.service import Router

log = structlog.get_logger("foundry_router.proxy")

MODEL_CHOICES = f"the id of a model from GET {MODELS_ROUTE}"


def authorize(router: Router, request: Request) -> None:
    """With ROUTER_API_KEYS set, /v1/* needs one of them as a bearer token."""
    keys = router.settings.api_keys
    if not keys:
        return
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    given = token.strip().encode()
    if scheme.lower() == "bearer" and any(hmac.compare_digest(given, k.get_secret_value().encode()) for k in keys):
        return
    message = "Missing or wrong API key: send 'Authorization: Bearer <key>' with one of the router's ROUTER_API_KEYS."
    raise ClientError(401, message, "invalid_api_key")


async def answer(router: Router, request: Request, operation: Operation) -> Response:
    """The client's response to one request of `operation`, whatever happens (a bug included: a 500, logged)."""
    request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
    exchange = Exchange({}, "unknown", "", request_id, list(request.headers.items()), operation=operation)
    try:
        authorize(router, request)
        exchange.payload = await read_payload(request, router.settings.max_request_bytes)
        exchange.model = requested_model(exchange.payload, MODEL_CHOICES)
        exchange.route = requested_route(request, router.settings.default_route)
        return await forward(router, exchange, plan(router, exchange))
    except RequestError as error:
        finish(router, exchange, None, error.status, error=error.code, message=error.message)
        return error_response(error)
    except Exception as exc:  # a bug here: still an answer in the OpenAI shape, counted and logged
        log.exception("router_failed", request_id=request_id)
        finish(router, exchange, None, 500, error="internal_error")
        return error_response(internal_error("router", request_id, exc))


def plan(router: Router, exchange: Exchange) -> list:
    """The checked request's candidates, best first (max_tokens fitted for a chat that sent none)."""
    operation, payload, registry = exchange.operation, exchange.payload, router.registry
    context = registry.context_length(registry.model_id(exchange.model))
    if operation.chat:
        check_chat_request(payload, context)
    if router.settings.log_prompts:
        log.info(
            "prompt", request_id=exchange.request_id, **{operation.prompt_field: payload.get(operation.prompt_field)}
        )
    prompt_tokens = fitting.estimate_prompt_tokens(payload.get("messages")) if operation.chat else 0
    route_plan = plan_route(registry.statuses, exchange.model, exchange.route, prompt_tokens,
                            router.settings.cloud_prompt_tokens)  # type: ignore[arg-type]  # fmt: skip
    if not route_plan.targets:
        not_found = route_plan.status == 404
        raise ClientError(route_plan.status, f"Cannot answer: {route_plan.problem}.",
                          "model_not_found" if not_found else "no_upstream",
                          "invalid_request_error" if not_found else "server_error")  # fmt: skip
    targets, exchange.unserved = skip_unserved(registry.statuses, operation, route_plan.targets)
    if not targets:
        raise no_answer(exchange)
    if operation.chat:
        fit_max_tokens(router, exchange, prompt_tokens, context)
    return targets


def requested_route(request: Request, default: str) -> str:
    route = request.headers.get(ROUTE_HEADER, "").strip().lower() or default
    if route not in ROUTES:
        message = f"Invalid X-Foundry-Route header: must be one of {', '.join(ROUTES)}; got {route[:40]!r}."
        raise RequestError(400, message, "invalid_route")
    return route


def fit_max_tokens(router: Router, exchange: Exchange, prompt_tokens: int, context: int | None) -> None:
    if fitting.has_max_tokens(exchange.payload):
        return
    context = context or router.settings.context_tokens
    exchange.fitted_max_tokens = fitting.fit_max_tokens(context, prompt_tokens, router.settings.default_max_tokens)
    exchange.payload["max_tokens"] = exchange.fitted_max_tokens
