"""The HTTP application: the OpenAI routes every client uses, plus health, readiness and metrics.

Chat completions are checked here before they go (foundry_common.chat_request, max_tokens fitting); text
completions and embeddings go as they are, to an upstream that serves them (operations.py).

Handlers live at module level and find the router's parts on `request.app.state.router`, so each can be
read (and tested) on its own.
"""

from __future__ import annotations

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

from foundry_common.drain import DrainRequests
from foundry_common.protocol import MODELS_ROUTE
from foundry_common.server import draining_response, not_routed
from foundry_router.errors import ClientError, error_response
from foundry_router.operations import CHAT, EMBEDDINGS, OPERATIONS, TEXT_COMPLETION
from foundry_router.proxy import answer, authorize
from foundry_router.service import Router, build_router
from foundry_router.settings import Settings

log = structlog.get_logger("foundry_router.app")


def router_of(request: Request) -> Router:
    return request.app.state.router


async def healthz(request: Request) -> Response:
    # Liveness: the process answers. Upstream trouble is /readyz's business, not a reason to restart.
    # Stopping, it fails: a load balancer (the Swarm edge) then sends new requests to other replicas.
    if request.app.state.drain.draining:
        message = "stopping: the answers in flight finish here, new requests go to another replica"
        return draining_response(message)
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
        authorize(router_of(request), request)
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
            "alias": registry.alias_of(model),  # another name for it that requests may use
            "context_length": registry.context_length(model),
        }
        for model, statuses in registry.models().items()
    ]
    return JSONResponse({"object": "list", "data": data})


async def chat_completions(request: Request) -> Response:
    return await answer(router_of(request), request, CHAT)


async def completions(request: Request) -> Response:
    return await answer(router_of(request), request, TEXT_COMPLETION)


async def embeddings(request: Request) -> Response:
    return await answer(router_of(request), request, EMBEDDINGS)


def create_app(settings: Settings) -> Starlette:
    router = build_router(settings)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await router.start()
        try:
            yield
        finally:
            await router.stop()

    routes = [  # in this order in the message of a 404 (foundry_common.server.not_routed)
        Route(MODELS_ROUTE, models, methods=["GET"]),
        Route(CHAT.route, chat_completions, methods=["POST"]),
        Route(TEXT_COMPLETION.route, completions, methods=["POST"]),
        Route(EMBEDDINGS.route, embeddings, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
    drain = settings.drain()
    # A stop (SIGTERM) lets the answers being streamed finish: foundry_common/drain.py, served by __main__.
    middleware = [Middleware(DrainRequests, drain=drain, paths=frozenset(o.route for o in OPERATIONS))]
    app = Starlette(
        routes=routes,
        middleware=middleware,
        lifespan=lifespan,
        exception_handlers={HTTPException: not_routed("router")},
    )
    app.state.router = router
    app.state.drain = drain
    return app
