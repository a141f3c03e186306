"""The HTTP application: the OpenAI routes every client uses, plus health, readiness and metrics.

Handlers live at module level and find the router's parts on `request.app.state.router`, so each can be
read (and tested) on its own.
"""

from __future__ import annotations

import hmac
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from foundry_common.chat_request import RequestError, check_chat_request
from foundry_common.drain import DrainRequests
from foundry_common.request_body import read_payload
from foundry_router import fitting
from foundry_router.proxy import ClientError, Exchange, finish, forward
from foundry_router.routing import plan_route
from foundry_router.service import Router, build_router
from foundry_router.settings import ROUTES, Settings

log = structlog.get_logger("foundry_router.app")

CHAT_ROUTE = "/v1/chat/completions"
ROUTE_HEADER = "x-foundry-route"
OPEN_ROUTES = "GET /v1/models, POST /v1/chat/completions, GET /healthz, GET /readyz and GET /metrics"


def error_response(error: RequestError) -> Response:
    # The OpenAI error shape, so OpenAI clients surface the message as it is; ASCII-escaped JSON, so a message
    # quoting the client's input always encodes.
    body = {"error": {"message": error.message, "type": error.error_type, "param": error.param, "code": error.code}}
    headers = getattr(error, "headers", None)
    return Response(json.dumps(body).encode(), status_code=error.status, media_type="application/json",
                    headers=headers)  # fmt: skip


def router_of(request: Request) -> Router:
    return request.app.state.router


def authorize(request: Request) -> None:
    """With ROUTER_API_KEYS set, /v1/* needs one of them as a bearer token."""
    keys = router_of(request).settings.api_keys
    if not keys:
        return
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    given = token.strip().encode()
    if scheme.lower() == "bearer" and any(hmac.compare_digest(given, k.get_secret_value().encode()) for k in keys):
        return
    message = "Missing or wrong API key: send 'Authorization: Bearer <key>' with one of the router's ROUTER_API_KEYS."
    raise ClientError(401, message, "invalid_api_key")


async def healthz(request: Request) -> Response:
    # Liveness: the process answers. Upstream trouble is /readyz's business, not a reason to restart.
    # Stopping, it fails: a load balancer (the Swarm edge) then sends new requests to other replicas.
    if request.app.state.drain.draining:
        message = "stopping: the answers in flight finish here, new requests go to another replica"
        return JSONResponse({"status": "stopping", "message": message}, status_code=503)
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    router = router_of(request)
    registry = router.registry
    body: dict = {"ready": registry.ready, "models": list(registry.models()), "upstreams": registry.snapshot()}
    body["warnings"] = router.warnings
    if not registry.ready:
        body["message"] = "No upstream serves a model yet: start Foundry Local or check FOUNDRY_LOCAL_URLS."
    return JSONResponse(body, status_code=200 if registry.ready else 503)


async def metrics(request: Request) -> Response:
    return Response(generate_latest(router_of(request).recorder.registry), media_type=CONTENT_TYPE_LATEST)


async def models(request: Request) -> Response:
    try:
        authorize(request)
    except ClientError as error:
        return error_response(error)
    registry = router_of(request).registry
    data = [
        {
            "id": model,
            "object": "model",
            "created": 0,
            "owned_by": "openai" if all(s.upstream.cloud for s in statuses) else "foundry-local",
            "upstreams": [s.upstream.name for s in statuses],
            "context_length": registry.context_length(model),
        }
        for model, statuses in registry.models().items()
    ]
    return JSONResponse({"object": "list", "data": data})


async def chat_completions(request: Request) -> Response:
    router = router_of(request)
    request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
    exchange = Exchange({}, "unknown", "", request_id, list(request.headers.items()))
    try:
        authorize(request)
        exchange.payload = await read_payload(request, router.settings.max_request_bytes)
        exchange.model = requested_model(exchange.payload)
        exchange.route = requested_route(request, router.settings.default_route)
        check_chat_request(exchange.payload, router.registry.context_length(exchange.model))
        if router.settings.log_prompts:
            log.info("prompt", request_id=request_id, messages=exchange.payload.get("messages"))
        prompt_tokens = fitting.estimate_prompt_tokens(exchange.payload.get("messages"))
        plan = plan_route(
            router.registry.statuses, exchange.model, exchange.route, prompt_tokens, router.settings.cloud_prompt_tokens
        )  # type: ignore[arg-type]
        if not plan.targets:
            code = "model_not_found" if plan.status == 404 else "no_upstream"
            raise ClientError(plan.status, f"Cannot answer: {plan.problem}.", code,
                              "invalid_request_error" if plan.status == 404 else "server_error")  # fmt: skip
        fit_max_tokens(router, exchange, prompt_tokens)
        return await forward(router, exchange, list(plan.targets))
    except RequestError as error:
        finish(router, exchange, None, error.status, error=error.code, message=error.message)
        return error_response(error)
    except Exception as exc:  # a bug here: still an answer in the OpenAI shape, counted and logged
        log.exception("router_failed", request_id=request_id)
        finish(router, exchange, None, 500, error="internal_error")
        message = f"The router failed on this request ({type(exc).__name__}); request id {request_id}."
        return error_response(RequestError(500, message, "internal_error", "server_error"))


def requested_model(payload: dict) -> str:
    model = payload.get("model")
    if model is None or model == "":
        raise RequestError(400, "'model' is required: send the id of a model from GET /v1/models.", "model_missing",
                           param="model")  # fmt: skip
    if not isinstance(model, str):
        raise RequestError(400, "Invalid 'model': must be a string, the id of a model from GET /v1/models.",
                           "invalid_type", param="model")  # fmt: skip
    return model


def requested_route(request: Request, default: str) -> str:
    route = request.headers.get(ROUTE_HEADER, "").strip().lower() or default
    if route not in ROUTES:
        message = f"Invalid X-Foundry-Route header: must be one of {', '.join(ROUTES)}; got {route[:40]!r}."
        raise RequestError(400, message, "invalid_route")
    return route


def fit_max_tokens(router: Router, exchange: Exchange, prompt_tokens: int) -> None:
    if fitting.has_max_tokens(exchange.payload):
        return
    context = router.registry.context_length(exchange.model) or router.settings.context_tokens
    exchange.fitted_max_tokens = fitting.fit_max_tokens(context, prompt_tokens, router.settings.default_max_tokens)
    exchange.payload["max_tokens"] = exchange.fitted_max_tokens


async def not_routed(request: Request, exc: HTTPException) -> Response:
    # Starlette's own 404/405 are plain text: say it in the OpenAI shape, with the routes there are.
    where = f"{request.method} {request.url.path}"
    if exc.status_code == 405:
        allowed = [m.strip() for m in (exc.headers or {}).get("Allow", "").split(",")]
        allowed_text = " or ".join(sorted(m for m in allowed if m != "HEAD")) or "HEAD"
        error = ClientError(405, f"{where} is not supported: use {allowed_text} {request.url.path}.",
                            "method_not_allowed", headers=dict(exc.headers or {}))  # fmt: skip
        return error_response(error)
    if exc.status_code == 404:
        return error_response(RequestError(404, f"There is no {where} here: this router serves {OPEN_ROUTES}.",
                                           "not_found"))  # fmt: skip
    return error_response(RequestError(exc.status_code, str(exc.detail), "http_error"))


def create_app(settings: Settings) -> Starlette:
    router = build_router(settings)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await router.start()
        try:
            yield
        finally:
            await router.stop()

    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/v1/models", models, methods=["GET"]),
        Route(CHAT_ROUTE, chat_completions, methods=["POST"]),
    ]
    drain = settings.drain()
    # A stop (SIGTERM) lets the answers being streamed finish: foundry_common/drain.py, served by __main__.
    middleware = [Middleware(DrainRequests, drain=drain, paths=frozenset({CHAT_ROUTE}))]
    app = Starlette(
        routes=routes, middleware=middleware, lifespan=lifespan, exception_handlers={HTTPException: not_routed}
    )
    app.state.router = router
    app.state.drain = drain
    return app
