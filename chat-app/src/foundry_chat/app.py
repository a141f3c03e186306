"""The HTTP application: health, readiness and metrics routes, with Chainlit mounted at `/` behind them.

Chainlit's own FastAPI app has a catch-all route that would shadow anything added to it, so ours is the
outer app: its routes are matched first, everything else goes to Chainlit (UI, REST API, Socket.IO). That also
keeps them open when the chat asks for a login (CHAT_PASSWORD): probes and Prometheus have no password.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from foundry_chat.chainlit_root import prepare_chainlit_root
from foundry_chat.service import Service, build_service, install
from foundry_chat.settings import Settings
from foundry_chat.views import not_ready_message
from foundry_common.server import draining_response

HANDLERS = Path(__file__).with_name("ui.py")
DRAINING_MESSAGE = "stopping: the answers in flight finish here, new sessions go to another replica"


def create_app(settings: Settings) -> FastAPI:
    """The app; its `state.drain` is what `serve` needs to stop it without cutting answers off."""
    service = build_service(settings)
    install(service)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    app = FastAPI(lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.drain = service.drain
    add_operational_routes(app, service)

    prepare_chainlit_root(settings.chat_allowed_origins)
    from chainlit.utils import mount_chainlit  # imported late: Chainlit reads its folder at import

    from foundry_chat.auth import install_login
    from foundry_chat.chainlit_fixes import accept_long_messages, keep_the_page_on_this_machine, remove_blocking_sleeps
    from foundry_chat.feedback import add_feedback_routes
    from foundry_chat.login_guard import install_login_guard

    remove_blocking_sleeps()
    accept_long_messages()
    keep_the_page_on_this_machine()
    # Before mounting: Chainlit checks then that a login comes with a token secret.
    install_login(settings)
    register_data_layer(service)
    # Before the mount, which would shadow them: Chainlit's own feedback routes check no ownership.
    add_feedback_routes(app, service)
    mount_chainlit(app=app, target=str(HANDLERS), path="/")
    # The login's rate limit, and quiet refusals of bad tokens (login_guard.py).
    install_login_guard(app, settings)
    return app


def register_data_layer(service: Service) -> None:
    """Always register ours: without one, Chainlit would start its own PostgreSQL-only layer on DATABASE_URL."""
    import chainlit as cl

    @cl.data_layer
    def history_layer() -> object:
        # Asked once, at the first request (after start): None keeps Chainlit's history features off.
        return service.history.active


def add_operational_routes(app: FastAPI, service: Service) -> None:
    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> JSONResponse:
        # Liveness: the process answers. Upstream trouble is /readyz's business, not a reason to restart.
        # Stopping, it fails: a load balancer (the Swarm edge) then sends new sessions to other replicas.
        if service.drain.draining:
            return draining_response(DRAINING_MESSAGE)
        return JSONResponse({"status": "ok"})

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        # What the router said at its last /readyz (read every ROUTER_POLL_SECONDS): ready when it serves a model.
        if service.drain.draining:
            return JSONResponse({"ready": False, "message": DRAINING_MESSAGE}, status_code=503)
        status = service.router.status
        body: dict = {
            "ready": status.ready,
            "models": list(status.models),
            "router": service.settings.router_url,
            "upstreams": list(status.upstreams),
        }
        if not status.ready:
            body["message"] = not_ready_message(status)
        history = service.history
        body["history"] = {"database": history.where, "ok": history.active is not None or not history.enabled}
        if history.problem:
            body["history"]["problem"] = history.problem
        return JSONResponse(body, status_code=200 if status.ready else 503)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)
