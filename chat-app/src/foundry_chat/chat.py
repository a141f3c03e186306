"""Streaming one answer: try the planned upstreams in order, fail over before the first token, measure it all.

Independent of Chainlit: the UI hands in the prompt and a coroutine that shows each token.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

import httpx2
import openai
import structlog

from foundry_chat.metrics import ChatMetrics
from foundry_chat.routing import Plan, Target
from foundry_chat.sse import StreamError, parse_line
from foundry_chat.upstreams import Registry, Upstream

log = structlog.get_logger("foundry_chat.chat")

OPERATION = "chat"
Outcome = Literal["ok", "interrupted", "stopped", "failed"]


@dataclass
class Answer:
    text: str = ""
    target: Target | None = None
    outcome: Outcome = "ok"
    # For people: which upstream, what failed, what to do. Empty when all went well.
    error: str = ""
    input_tokens: int | None = None
    output_tokens: int | None = None
    time_to_first_chunk: float | None = None
    duration: float = 0.0
    chunks: int = 0
    failed_upstreams: list[str] = field(default_factory=list)


class UpstreamFailure(Exception):
    def __init__(self, kind: str, detail: str, advice: str) -> None:
        super().__init__(detail)
        self.kind, self.detail, self.advice = kind, detail, advice


def classify(exc: BaseException, upstream: Upstream, timeout: float) -> UpstreamFailure:
    """Turn a client exception into words: what failed and what to do."""
    if isinstance(exc, openai.APITimeoutError | httpx2.TimeoutException):
        # The read timeout applies to every wait for the next bytes: before the first token and between tokens.
        return UpstreamFailure(
            "timeout",
            f"sent nothing for {timeout:g} s (REQUEST_TIMEOUT_SECONDS)",
            "try again; if the upstream is just slow, raise REQUEST_TIMEOUT_SECONDS",
        )
    if isinstance(exc, StreamError):
        return UpstreamFailure("stream_error", str(exc), "try again; if it persists, check the upstream's log")
    # Transport errors while reading the stream come from the HTTP client itself, not wrapped by openai.
    if isinstance(exc, openai.APIConnectionError | httpx2.TransportError):
        advice = "check that it is running (`docker compose ps`, or start Foundry Local on the host)"
        return UpstreamFailure("connection", "could not be reached or closed the connection", advice)
    if isinstance(exc, openai.APIStatusError):
        message = exc.message
        body = exc.body
        if isinstance(body, dict):
            inner = body.get("error", body)
            if isinstance(inner, dict) and inner.get("message"):
                message = str(inner["message"])
        if exc.status_code in {401, 403}:
            variable = "CLOUD_API_KEY" if upstream.cloud else "FOUNDRY_LOCAL_API_KEYS or API_KEY"
            advice = f"check its API key ({variable})"
        elif exc.status_code == 404:
            advice = "pick another model in the chat settings"
        elif exc.status_code == 429:
            advice = "wait a moment and try again"
        elif exc.status_code in {400, 413, 422}:
            # The upstream refused this request (e.g. over the model's context): its message says what to change.
            advice = "change the message or the chat settings as it says"
        else:
            advice = "try again; if it persists, check the upstream's log"
        # Without its full stop: the detail is one clause of a longer sentence.
        detail = f"answered HTTP {exc.status_code}: {message.rstrip('. ')}"
        return UpstreamFailure(f"http_{exc.status_code}", detail, advice)
    name = type(exc).__name__
    return UpstreamFailure(name, f"failed ({name})", "try again; if it persists, check the service log")


def sentence(text: str) -> str:
    return f"{text[:1].upper()}{text[1:]}." if text else ""


class ChatService:
    def __init__(self, registry: Registry, metrics: ChatMetrics, timeout: float, log_prompts: bool = False) -> None:
        self.registry = registry
        self.metrics = metrics
        self.timeout = timeout
        self.log_prompts = log_prompts
        self._clients: dict[Upstream, openai.AsyncOpenAI] = {}

    def client(self, upstream: Upstream) -> openai.AsyncOpenAI:
        # One client (one connection pool) per upstream for the life of the service.
        if upstream not in self._clients:
            self._clients[upstream] = openai.AsyncOpenAI(
                base_url=upstream.base_url,
                api_key=upstream.api_key,
                # Failover is ours: no hidden retries that would delay the next upstream.
                max_retries=0,
                timeout=openai.Timeout(self.timeout, connect=3.0),
            )
        return self._clients[upstream]

    async def close(self) -> None:
        await asyncio.gather(*(c.close() for c in self._clients.values()), return_exceptions=True)

    async def answer(
        self,
        plan: Plan,
        messages: list[dict[str, str]],
        temperature: float,
        max_tokens: int,
        on_token: Callable[[str], Awaitable[None]],
    ) -> Answer:
        """Stream an answer into `on_token`. Cancelling the calling task closes the upstream request."""
        started = time.perf_counter()
        answer = Answer()
        advice: dict[str, None] = {}  # what to do about each failure, once each, in order
        if self.log_prompts:
            log.info("prompt", messages=messages)
        for target in plan.targets:
            answer.target = target
            try:
                await self._stream(target, messages, temperature, max_tokens, on_token, answer)
            except asyncio.CancelledError:
                answer.outcome = "stopped"
                self._observe(target, answer, started, "cancelled")
                self._finish(answer, started)
                raise
            except Exception as exc:  # any failure of the upstream or the stream, never shown as a traceback
                failure = classify(exc, target.upstream, self.timeout)
                self._observe(target, answer, started, failure.kind)
                if failure.kind in {"connection", "timeout"} or failure.kind.startswith("http_5"):
                    self.registry.mark_failed(target.upstream, failure.detail)
                if answer.time_to_first_chunk is None:
                    # Nothing shown yet: the next upstream can still answer the whole question.
                    answer.failed_upstreams.append(f"{target.upstream.name} {failure.detail}")
                    advice.setdefault(failure.advice)
                    self.metrics.failovers.labels(target.upstream.name).inc()
                    log.warning("upstream_failed_before_first_token", upstream=target.upstream.name, error=failure.kind)
                    continue
                answer.outcome = "interrupted"
                answer.error = (
                    f"The answer was interrupted: {target.upstream.name} {failure.detail} after "
                    f"{answer.chunks} chunks. {sentence(failure.advice)}"
                )
                break
            else:
                answer.outcome, answer.error = "ok", ""
                self._observe(target, answer, started, "")
                break
        else:
            answer.outcome = "failed"
            if answer.failed_upstreams:
                answer.error = (
                    f"No upstream could answer: {'; '.join(answer.failed_upstreams)}. {sentence('; '.join(advice))}"
                )
            else:
                answer.error = plan.problem or "no upstream is available"
        self._finish(answer, started)
        return answer

    async def _stream(
        self,
        target: Target,
        messages: list[dict[str, str]],
        temperature: float,
        max_tokens: int,
        on_token: Callable[[str], Awaitable[None]],
        answer: Answer,
    ) -> None:
        labels = (OPERATION, target.upstream.provider, target.model, target.upstream.name)
        per_chunk = self.metrics.time_per_output_chunk.labels(*labels)
        request_started = time.perf_counter()
        answer.text, answer.output_tokens, answer.input_tokens, answer.chunks = "", None, None, 0
        last_chunk_at = request_started
        request = self.client(target.upstream).chat.completions.with_streaming_response.create(
            model=target.model,
            # The client walks typed parameters recursively to validate them (~1 ms of CPU per request for a
            # few turns of history, paid by every user at once under load); our messages are plain
            # role/content strings already, so they go in as they are.
            messages=[],
            extra_body={"messages": messages},
            temperature=temperature,
            max_tokens=max_tokens,
            stream=True,
            stream_options={"include_usage": True},
        )
        # Leaving this block (done, failed or cancelled) closes the HTTP response, which stops the generation.
        async with request as response:
            async for line in response.iter_lines():
                chunk = parse_line(line)
                if chunk is None:
                    continue
                if chunk.done:
                    break
                if chunk.output_tokens is not None:
                    answer.input_tokens, answer.output_tokens = chunk.input_tokens, chunk.output_tokens
                token = chunk.token
                if not token:
                    continue
                now = time.perf_counter()
                if answer.chunks == 0:
                    answer.time_to_first_chunk = now - request_started
                    self.metrics.time_to_first_chunk.labels(*labels).observe(answer.time_to_first_chunk)
                else:
                    per_chunk.observe(now - last_chunk_at)
                last_chunk_at = now
                answer.chunks += 1
                answer.text += token
                await on_token(token)
        if answer.output_tokens is None:
            answer.output_tokens = answer.chunks  # the upstream sent no usage: one token per chunk is close

    def _observe(self, target: Target, answer: Answer, started: float, error_type: str) -> None:
        labels = (OPERATION, target.upstream.provider, target.model, target.upstream.name)
        self.metrics.duration.labels(*labels, error_type).observe(time.perf_counter() - started)
        if answer.input_tokens is not None:
            self.metrics.token_usage.labels(*labels, "input").observe(answer.input_tokens)
        if answer.output_tokens is not None:
            self.metrics.token_usage.labels(*labels, "output").observe(answer.output_tokens)

    def _finish(self, answer: Answer, started: float) -> None:
        answer.duration = time.perf_counter() - started
        self.metrics.messages.labels(answer.outcome).inc()
        target = answer.target
        log.info(
            "chat_answer",
            outcome=answer.outcome,
            upstream=target.upstream.name if target else None,
            model=target.model if target else None,
            route=target.reason if target else None,
            ttft_ms=round(answer.time_to_first_chunk * 1000, 2) if answer.time_to_first_chunk is not None else None,
            duration_ms=round(answer.duration * 1000, 2),
            input_tokens=answer.input_tokens,
            output_tokens=answer.output_tokens,
            failed_upstreams=answer.failed_upstreams or None,
            error=answer.error or None,
        )
