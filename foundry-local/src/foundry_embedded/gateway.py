"""The gateway: the only routes of the runtime that leave the container, plus health, readiness and metrics.

Anything not routed here (the runtime's /shutdown, /models/load/..., /status, ...) is a 404, because
the runtime itself listens on loopback inside the container and only this app forwards to it.

Handlers live at module level and find what they share on `request.app.state.gateway`, so each can be
read (and tested) on its own.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp
import structlog
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from foundry_common.chat_request import (
    RequestError,
    check_chat_request,
    clean_runtime_message,
    context_exceeded,
    requested_model,
    runtime_wording,
)
from foundry_common.protocol import CHAT_ROUTE, TOOLS_IGNORED_HEADER, error_message
from foundry_common.relay import WholeLines, error_event, first_event, stream_error
from foundry_common.request_body import read_payload
from foundry_common.server import error_response, internal_error, not_routed
from foundry_common.sse import StreamWatcher
from foundry_embedded.metrics import Metrics
from foundry_embedded.runtime import EmbeddedRuntime, ServedModel, Status
from foundry_embedded.settings import Settings

log = structlog.get_logger("foundry_embedded.gateway")

TOOL_FIELDS = ("tools", "tool_choice", "parallel_tool_calls")


def status_body(status: Status) -> dict:
    body: dict = {"state": status.state, "message": status.message, "model": status.model}
    if status.download is not None:
        body["download"] = {
            "percent": status.download.percent,
            "bytes_per_second": status.download.bytes_per_second,
            "size_bytes": status.download.size_bytes,
        }
    body["models"] = [m.id for m in status.models]
    return body


@dataclass
class Gateway:
    """What the handlers share, on `app.state.gateway`; `session` is open while the app runs (its lifespan)."""

    settings: Settings
    runtime: EmbeddedRuntime
    metrics: Metrics
    session: aiohttp.ClientSession | None = None


def gateway_of(request: Request) -> Gateway:
    return request.app.state.gateway


def open_session(settings: Settings) -> aiohttp.ClientSession:
    # A new loopback connection per request, none kept alive: on a reused connection the runtime's
    # web service holds its first streamed chunk back ~40 ms (Nagle against the client's delayed
    # ACK), while a fresh connection costs ~0.1 ms. No connection limit: streams never queue.
    # aiohttp rather than httpx: ~1 ms less time to first token on this hop (measured here).
    return aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=settings.upstream_timeout_seconds),
        connector=aiohttp.TCPConnector(force_close=True, limit=0),
    )


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    gateway: Gateway = app.state.gateway
    gateway.session = open_session(gateway.settings)
    try:
        yield
    finally:
        await gateway.session.close()
        await asyncio.to_thread(gateway.runtime.stop)


async def healthz(request: Request) -> Response:
    # Liveness: 200 while the service runs, whatever its model is doing (a first download can take many minutes,
    # and nothing should wait for it or restart it meanwhile); 503 only while it stops. The body says the state.
    status = gateway_of(request).runtime.status
    return JSONResponse(status_body(status), status_code=503 if status.state == "stopping" else 200)


async def readyz(request: Request) -> Response:
    # Readiness: 200 once the model is loaded and served; 503 with the same body before (and after a failure).
    status = gateway_of(request).runtime.status
    return JSONResponse(status_body(status), status_code=200 if status.ready else 503)


async def models(request: Request) -> Response:
    data = [
        {
            "id": m.id,
            "object": "model",
            "created": 0,
            "owned_by": "foundry-local",
            "alias": m.alias,
            # Tokens of prompt and answer together (None when the runtime does not say): clients such as the
            # router fit max_tokens to it.
            "context_length": m.context_length,
            # Whether requests with `tools` reach the model (False: they are served without them; None: unknown).
            "tool_calls": m.tool_calls,
        }
        for m in gateway_of(request).runtime.status.models
    ]
    return JSONResponse({"object": "list", "data": data})


async def metrics_route(request: Request) -> Response:
    return Response(generate_latest(gateway_of(request).metrics.registry), media_type=CONTENT_TYPE_LATEST)


async def chat_completions(request: Request) -> Response:
    started = time.perf_counter()
    gateway = gateway_of(request)
    request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
    structlog.contextvars.bind_contextvars(request_id=request_id)
    model_label = "unknown"
    try:
        payload = await read_payload(request, gateway.settings.max_request_bytes)
        model = resolve_model(payload, gateway.runtime.status)
        model_label = model.id
        check_chat_request(payload, model.context_length)
        payload["model"] = model.id
        defaulted = payload.get("max_tokens") is None and payload.get("max_completion_tokens") is None
        if defaulted:
            payload["max_tokens"] = default_max_tokens(model, gateway.settings.default_max_tokens)
        headers = {"x-request-id": request_id}
        if (ignored := drop_tools(payload, model)) is not None:
            log.info("tools_ignored", request_id=request_id, model=model.id, reason=ignored)
            headers[TOOLS_IGNORED_HEADER] = ignored
        return await forward(gateway, payload, model, defaulted, started, headers)
    except RequestError as exc:
        gateway.metrics.failed(CHAT_ROUTE, model_label, exc.code)
        finish(gateway.metrics, model_label, exc.status, started, request_id, error=exc.code, message=exc.message)
        return error_response(exc)
    except Exception as exc:  # a bug here: still an answer in the OpenAI shape, counted and logged
        log.exception("chat_completion_failed", request_id=request_id)
        gateway.metrics.failed(CHAT_ROUTE, model_label, "internal_error")
        finish(gateway.metrics, model_label, 500, started, request_id, error="internal_error")
        return error_response(internal_error("gateway", request_id, exc))
    finally:
        structlog.contextvars.unbind_contextvars("request_id")


def drop_tools(payload: dict, model: ServedModel) -> str | None:
    """For a model that cannot call tools, the request without its tools, and why; a 400 if it needs a tool call.

    The runtime refuses any request with `tools` (but tool_choice "none") for such a model with a 500. Chat pages
    such as Open WebUI's send their built-in tools with every message: the model still answers, in text.
    """
    tools, choice = payload.get("tools"), payload.get("tool_choice")
    requires_call = choice == "required" or isinstance(choice, dict)  # a dict names the function to call
    if model.tool_calls is not False or not tools or (choice not in (None, "auto") and not requires_call):
        return None  # "none" (the runtime takes it) and values it judges itself go as they are
    reason = (
        f"{model.id} cannot call tools: its model folder publishes no tool-call markers "
        "(bot_token_id and eot_token_id in genai_config.json)"
    )
    if requires_call:
        message = (
            f'tool_choice {json.dumps(choice)[:200]} requires a tool call, but {reason}. Send tool_choice "auto" '
            'or "none" (the model then answers in text), or use a model that can call tools.'
        )
        raise RequestError(400, message, "tool_calls_unsupported", param="tool_choice")
    for field in TOOL_FIELDS:
        payload.pop(field, None)
    return f"{reason}; answered without the {len(tools)} tool(s) of the request"


async def forward(
    gateway: Gateway, payload: dict, model: ServedModel, defaulted: bool, started: float, headers: dict[str, str]
) -> Response:
    """The checked request sent to the runtime: its answer, or its stream relayed; a RequestError if it refuses.

    `headers` go back to the client with the answer (the request id, first).
    """
    url = f"{model.base_url or gateway.runtime.base_url}{model.api_base}/chat/completions"
    request_id = headers["x-request-id"]
    try:
        upstream = await gateway.session.post(
            url,
            data=json.dumps(payload).encode(),
            headers={"content-type": "application/json", "x-request-id": request_id},
        )
        if upstream.status != 200:
            body = await upstream.read()
            upstream.close()
            raise runtime_refusal(upstream.status, error_message(body, limit=100_000), defaulted)
        if payload.get("stream") is True:
            # The runtime refuses some requests (over the context) in the first event of a 200
            # stream: read that one event first, so that the client gets a 4xx for them too.
            head = await first_event(upstream.content.iter_any())
            if (refusal := stream_refusal(head, defaulted)) is not None:
                upstream.close()
                raise refusal
            return StreamingResponse(
                relay(gateway.metrics, upstream, head, model.id, started, request_id),
                media_type="text/event-stream",
                headers={"cache-control": "no-cache", "x-accel-buffering": "no", **headers},
            )
        body = await upstream.read()
        upstream.close()
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise runtime_unreachable(exc) from exc
    gateway.metrics.completed(model.id, started, body)
    finish(gateway.metrics, model.id, 200, started, request_id)
    return Response(body, media_type="application/json", headers=headers)


async def relay(
    metrics: Metrics, upstream: aiohttp.ClientResponse, head: bytes, model: str, started: float, request_id: str
) -> AsyncIterator[bytes]:
    """The runtime's stream passed on in whole lines (foundry_common.relay): a runtime cut mid-event leaves the
    client the whole events before the cut, then one error event of ours, never half an event."""
    watcher, lines = StreamWatcher(started), WholeLines()
    outcome, error = 200, None
    try:
        if whole := lines.push(head):
            watcher.feed(whole)
            yield whole
        async for chunk in upstream.content.iter_any():
            if whole := lines.push(chunk):
                watcher.feed(whole)
                yield whole
        if rest := lines.rest():  # a stream that ends without a last newline
            watcher.feed(rest)
            yield rest
    except (aiohttp.ClientError, TimeoutError) as exc:
        # The runtime went away mid-stream: end the stream with an error event the client can
        # show, rather than a connection that just stops.
        outcome, error = 502, "stream_failed"
        yield lines.then(error_event(runtime_unreachable(exc).message, error))
    except (asyncio.CancelledError, GeneratorExit, OSError):
        # Starlette cancels this generator when the client goes away: closing the upstream
        # response below closes the runtime's connection, which stops the generation. A client that
        # leaves once it has read [DONE] (the router, an SDK) had the whole answer.
        if not watcher.done:
            outcome, error = "cancelled", "client_disconnected"
        raise
    finally:
        upstream.close()  # drops the connection: the runtime stops generating for a client that left
        metrics.streamed(model, watcher, error)
        if error:
            metrics.failed(CHAT_ROUTE, model, error)
        finish(metrics, model, outcome, started, request_id, error=error, tokens=watcher.output_tokens)


def finish(metrics: Metrics, model: str, status: int | str, started: float, request_id: str, **fields: object) -> None:
    """Count the answered chat request and log its one line."""
    metrics.answered(CHAT_ROUTE, model, status)
    log.info(
        "chat_completion",
        request_id=request_id,
        model=model,
        status=status,
        duration_ms=round((time.perf_counter() - started) * 1000, 2),
        **{k: v for k, v in fields.items() if v is not None},
    )


async def unknown(request: Request, exc: HTTPException) -> Response:
    """Starlette's own 404 and 405, said as every service says them (foundry_common.server.not_routed); a wrong
    method on the chat route is counted as a refused chat request."""
    if exc.status_code == 405 and request.url.path == CHAT_ROUTE:
        metrics = gateway_of(request).metrics
        metrics.failed(CHAT_ROUTE, "unknown", "method_not_allowed")
        metrics.answered(CHAT_ROUTE, "unknown", 405)
    return await NOT_ROUTED(request, exc)


NOT_ROUTED = not_routed("service")


def create_app(settings: Settings, runtime: EmbeddedRuntime, metrics: Metrics) -> Starlette:
    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics_route, methods=["GET"]),
        Route("/v1/models", models, methods=["GET"]),
        Route(CHAT_ROUTE, chat_completions, methods=["POST"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: unknown})
    app.state.gateway = Gateway(settings, runtime, metrics)
    return app


def stream_refusal(head: bytes, defaulted: bool) -> RequestError | None:
    """A refusal when the stream's first event is the runtime's error event rather than a chunk."""
    error = stream_error(head)
    if error is None:
        return None
    status = 400 if error.get("type") == "invalid_request_error" else 502
    return runtime_refusal(status, str(error["message"]), defaulted)


def runtime_refusal(status: int, message: str, defaulted: bool) -> RequestError:
    """The runtime's refusal as the client gets it: its status, its words without C++ noise."""
    message = clean_runtime_message(message)
    if (clearer := context_exceeded(message, defaulted) or runtime_wording(message)) is not None:
        return clearer
    error_type = "server_error" if status >= 500 else "invalid_request_error"
    return RequestError(status, message or "The runtime refused the request.", "runtime_error", error_type)


def resolve_model(payload: dict, status: Status) -> ServedModel:
    if not status.ready:
        raise RequestError(503, f"No model is ready yet: {status.message}", "model_not_ready", "server_error")
    loaded = ", ".join(m.id for m in status.models)
    name = requested_model(payload, f"the id of a loaded model: {loaded}")
    model = status.find(name)
    if model is None:
        message = f"Model '{name[:200]}' is not loaded here. Loaded models: {loaded}."
        raise RequestError(404, message, "model_not_found", param="model")
    return model


def default_max_tokens(model: ServedModel, configured: int) -> int:
    """A max_tokens that fits: without one, the runtime asks for 2048 and small models refuse."""
    if model.context_length:
        return max(1, min(configured, model.context_length // 2))
    return configured


def runtime_unreachable(exc: Exception) -> RequestError:
    return RequestError(
        502,
        f"The Foundry Local runtime stopped answering ({type(exc).__name__}). Check /healthz and the service log.",
        "runtime_unreachable",
        "server_error",
    )
