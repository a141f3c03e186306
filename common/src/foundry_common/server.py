"""Serving an ASGI app as the services here do: our JSON logs only (no access lines), a bounded drain, and the
answers every service gives the same way (a refusal in the OpenAI shape, an unknown route, a bug)."""

from __future__ import annotations

import contextlib
import importlib
import json
import signal
import sys
from collections.abc import Awaitable, Callable
from types import FrameType
from typing import Any

import structlog
import uvicorn
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from uvicorn.config import STARTUP_FAILURE

from foundry_common.chat_request import RequestError
from foundry_common.drain import Drain
from foundry_common.logs import configure_logging

# Once uvicorn stops (at once, or after a Drain), open HTTP answers get this long before they are cut. Docker waits
# 10 s after SIGTERM by default before it kills.
GRACEFUL_SECONDS = 5

log = structlog.get_logger("foundry_common.server")


class DrainingServer(uvicorn.Server):
    """uvicorn, except that the first SIGTERM (or Ctrl-C) starts `drain` instead of stopping; uvicorn's own stop
    (closing the port, then the websockets) begins when the drain has finished, or at a second signal."""

    def __init__(self, config: uvicorn.Config, drain: Drain) -> None:
        super().__init__(config)
        self.drain = drain

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.drain.draining or self.should_exit:
            log.warning("stopping_now", signal=signal.Signals(sig).name, in_flight=self.drain.in_flight)
            super().handle_exit(sig, frame)
            return
        self.drain.begin()
        log.info(
            "draining",
            signal=signal.Signals(sig).name,
            in_flight=self.drain.in_flight,
            notice_seconds=self.drain.notice,
            grace_seconds=self.drain.grace,
        )

    async def on_tick(self, counter: int) -> bool:
        # uvicorn's main loop calls this every 0.1 s and stops when it returns True.
        if not self.should_exit and self.drain.finished():
            left = self.drain.in_flight
            (log.warning if left else log.info)("drained", waited_seconds=round(self.drain.waited(), 2), in_flight=left)
            self.should_exit = True
        return await super().on_tick(counter)


def run_service(settings: Any, app_factory: str, event: str, quiet: tuple[str, ...] = (), **fields: object) -> None:
    """A service's `main` once its settings are read: our logging, then its app (imported only then: frameworks such
    as Chainlit log while they load), one line saying where it listens, and uvicorn with the app's drain.
    `app_factory` is "module:function", called with the settings; `quiet` are loggers kept to warnings."""
    configure_logging(settings.log_level, settings.log_format, quiet=quiet)
    module, _, name = app_factory.partition(":")
    app = getattr(importlib.import_module(module), name)(settings)
    structlog.get_logger(module.split(".")[0]).info(event, host=settings.host, port=settings.port, **fields)
    serve(app, settings.host, settings.port, drain=app.state.drain)


def serve(app: object, host: str, port: int, drain: Drain | None = None) -> None:
    options = {"host": host, "port": port, "log_config": None, "access_log": False}
    if drain is None:
        uvicorn.run(app, timeout_graceful_shutdown=GRACEFUL_SECONDS, **options)  # type: ignore[arg-type]
        return
    config = uvicorn.Config(app, timeout_graceful_shutdown=GRACEFUL_SECONDS, **options)  # type: ignore[arg-type]
    server = DrainingServer(config, drain)
    with contextlib.suppress(KeyboardInterrupt):  # a second Ctrl-C, as uvicorn.run does
        server.run()
    if not server.started:
        sys.exit(STARTUP_FAILURE)  # as uvicorn.run: it could not start (e.g. its port is taken)


def error_response(error: RequestError, headers: dict[str, str] | None = None) -> Response:
    """The refusal as the client gets it: its status and the OpenAI error body."""
    return Response(error.body, status_code=error.status, media_type="application/json", headers=headers)


def draining_response(message: str) -> Response:
    """A draining service's /healthz: 503, so that a load balancer sends new work to other replicas; `message` says
    what happens to the work in flight."""
    return Response(json.dumps({"status": "stopping", "message": message}), 503, media_type="application/json")


def internal_error(service: str, request_id: str, exc: BaseException) -> RequestError:
    """The answer to a bug of ours on one request (after it is logged): a 500 in the OpenAI shape, with the id to
    find it in the log."""
    message = f"The {service} failed on this request ({type(exc).__name__}); request id {request_id}."
    return RequestError(500, message, "internal_error", "server_error")


def served_routes(request: Request) -> str:
    """The app's routes, for people: "GET /v1/models, POST /v1/chat/completions, … and GET /metrics"."""
    names = [
        f"{' or '.join(sorted(m for m in route.methods or () if m != 'HEAD'))} {route.path}"
        for route in request.app.routes
        if isinstance(route, Route)
    ]
    return ", ".join(names[:-1]) + f" and {names[-1]}" if len(names) > 1 else "".join(names)


def not_routed(service: str) -> Callable[[Request, HTTPException], Awaitable[Response]]:
    """The handler of Starlette's own 404 and 405 (plain text): said in the OpenAI shape, with the routes there are."""

    async def handler(request: Request, exc: HTTPException) -> Response:
        where = f"{request.method} {request.url.path}"
        if exc.status_code == 405:
            allowed = [m.strip() for m in (exc.headers or {}).get("Allow", "").split(",")]
            allowed_text = " or ".join(sorted(m for m in allowed if m != "HEAD")) or "HEAD"  # HEAD comes with GET
            message = f"{where} is not supported: use {allowed_text} {request.url.path}."
            return error_response(RequestError(405, message, "method_not_allowed"), dict(exc.headers or {}))
        if exc.status_code == 404:
            message = f"There is no {where} here: this {service} serves {served_routes(request)}."
            return error_response(RequestError(404, message, "unknown_route"))
        return error_response(RequestError(exc.status_code, str(exc.detail), "http_error"), exc.headers)

    return handler
