"""The loopback OpenAI-compatible chat server over the scheduler: /v1/chat/completions (whole or streamed, with
usage and finish_reason) and /healthz. Only the gateway calls it: the gateway has checked the request (shape, model,
max_tokens), so this reads what it needs and trusts the rest.

Trade-offs: no tools (the gateway is told the model cannot call them and serves such requests without them), one
choice (n=1), no logprobs; `temperature` absent or 0 is greedy, otherwise sampling with `top_p` and `seed`.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from foundry_common.protocol import CHAT_ROUTE, error_body
from foundry_embedded.batched.scheduler import Job, Params, Scheduler
from foundry_embedded.batched.text import TextStream


def text_of(content: object) -> str:
    """A message's content as text: a string, or the text parts of a list of parts."""
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return content if isinstance(content, str) else ""


def params_of(payload: dict) -> Params:
    max_tokens = payload.get("max_completion_tokens") or payload.get("max_tokens") or 512
    temperature = payload.get("temperature")
    top_p = payload.get("top_p")
    seed = payload.get("seed")
    return Params(int(max_tokens), float(temperature) if temperature else None, float(top_p or 1.0), seed)


def error(status: int, message: str, code: str, error_type: str = "invalid_request_error") -> Response:
    return Response(error_body(message, code, error_type), status_code=status, media_type="application/json")


class Answer:
    """One request's job and the text of its answer as it comes."""

    def __init__(self, request: Request, payload: dict) -> None:
        state = request.app.state
        self.model_id, self.scheduler = state.model_id, state.scheduler
        messages = [{"role": m.get("role"), "content": text_of(m.get("content"))} for m in payload["messages"]]
        self.prompt = state.model.prompt_ids(messages)
        self.params = params_of(payload)
        stop = payload.get("stop") or []
        self.text = TextStream(state.model.tokenizer, [stop] if isinstance(stop, str) else list(stop))
        self.id, self.created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        self.job = Job(self.prompt, self.params, asyncio.get_running_loop())

    def too_long(self, context: int | None) -> str | None:
        need = len(self.prompt) + self.params.max_tokens
        if context is None or need <= context:
            return None
        # The Foundry Local runtime's wording, which the gateway reads (foundry_common.chat_request.runtime_budget).
        return (f"This request requires {need} total tokens ({len(self.prompt)} input + {self.params.max_tokens} "
                f"output), more than the model's context length of {context}.")  # fmt: skip

    async def pieces(self) -> AsyncIterator[tuple[str, str | None]]:
        """(text, None) as tokens come, then ("", finish_reason); raises RuntimeError on the engine's error."""
        self.scheduler.submit(self.job)
        try:
            while True:
                kind, value = await self.job.events.get()
                if kind == "error":
                    raise RuntimeError(value)
                if kind == "end":
                    yield self.text.flush(), None
                    yield "", value
                    return
                if piece := self.text.push(value):
                    yield piece, None
                if self.text.stopped:
                    self.job.cancelled = True  # the engine drops the row at its next step
                    yield "", "stop"
                    return
        finally:
            self.job.cancelled = True  # a client that left: its row leaves the batch

    def usage(self) -> dict:
        prompt, output = len(self.prompt), self.job.generated
        return {"prompt_tokens": prompt, "completion_tokens": output, "total_tokens": prompt + output}

    def chunk(self, delta: dict, finish: str | None = None, **extra: object) -> bytes:
        body = {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model_id,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}  # fmt: skip
        return f"data: {json.dumps(body)}\n\n".encode()


async def stream(answer: Answer, include_usage: bool) -> AsyncIterator[bytes]:
    yield answer.chunk({"role": "assistant", "content": ""})
    try:
        async for piece, finish in answer.pieces():
            if piece:
                yield answer.chunk({"content": piece})
            if finish:
                yield answer.chunk({}, finish)
    except RuntimeError as exc:
        error = {"message": f"The batched engine failed: {exc}", "type": "server_error", "code": "engine_error"}
        yield f"data: {json.dumps({'error': error})}\n\n".encode()
        return
    if include_usage:
        body = {"id": answer.id, "object": "chat.completion.chunk", "created": answer.created,
                "model": answer.model_id, "choices": [], "usage": answer.usage()}  # fmt: skip
        yield f"data: {json.dumps(body)}\n\n".encode()
    yield b"data: [DONE]\n\n"


async def whole(answer: Answer) -> Response:
    parts, finish = [], None
    try:
        async for piece, finish_reason in answer.pieces():
            parts.append(piece)
            finish = finish_reason or finish
    except RuntimeError as exc:
        return error(500, f"The batched engine failed: {exc}", "engine_error", "server_error")
    message = {"role": "assistant", "content": "".join(parts)}
    choice = {"index": 0, "message": message, "finish_reason": finish}
    body = {"id": answer.id, "object": "chat.completion", "created": answer.created, "model": answer.model_id,
            "choices": [choice], "usage": answer.usage()}  # fmt: skip
    return JSONResponse(body)


async def chat_completions(request: Request) -> Response:
    try:
        payload = json.loads(await request.body())
        answer = Answer(request, payload)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        return error(400, f"Not a chat request this engine reads: {type(exc).__name__}: {exc}", "invalid_request")
    if (message := answer.too_long(request.app.state.model.context_length)) is not None:
        return error(400, message, "context_length_exceeded")
    if payload.get("stream") is True:
        include_usage = bool((payload.get("stream_options") or {}).get("include_usage"))
        headers = {"cache-control": "no-cache"}
        return StreamingResponse(stream(answer, include_usage), media_type="text/event-stream", headers=headers)
    return await whole(answer)


async def healthz(request: Request) -> Response:
    return JSONResponse({"state": "ready", "model": request.app.state.model_id})


def create_app(model, model_id: str, scheduler: Scheduler) -> Starlette:
    app = Starlette(routes=[Route(CHAT_ROUTE, chat_completions, methods=["POST"]), Route("/healthz", healthz)])
    app.state.model, app.state.model_id, app.state.scheduler = model, model_id, scheduler
    return app
