"""Streaming one answer from the router, with where it ran (its response headers), measured.

Independent of Chainlit: the UI hands in the prompt and a coroutine that shows each token. The router picks the
upstream, queues and fails over; the chat makes one request and says what happened, in words.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

import httpx2
import openai
import structlog

from foundry_chat.completion_chunks import StreamError, parse_line
from foundry_chat.metrics import ChatMetrics
from foundry_common.protocol import (
    FAILED_OVER_HEADER,
    MODEL_HEADER,
    ROUTE_HEADER,
    UPSTREAM_HEADER,
    queue_place,
    where_headers,
)
from foundry_common.protocol import ROUTE_REASON_HEADER as REASON_HEADER
from foundry_common.protocol import UPSTREAM_KIND_HEADER as KIND_HEADER

log = structlog.get_logger("foundry_chat.chat")

OPERATION = "chat"
Outcome = Literal["ok", "interrupted", "stopped", "failed"]
OnQueue = Callable[[int, float | None], Awaitable[None]]  # a place in the router's queue: ahead, expected wait (s)

# The router's request header (the route of the chat profile) and its response headers: foundry_common.protocol.
REQUEST_ID_HEADER = "X-Request-Id"
START_ROUTER = "check that it is running (`docker compose ps router`; start it with `docker compose up -d router`)"


@dataclass(frozen=True)
class Where:
    """Where the router ran a request, from its response headers."""

    upstream: str
    kind: str  # local or cloud
    model: str  # the model that answered (the cloud's may differ from the one asked for)
    reason: str = ""
    # Each upstream that failed before this one took the request, and how.
    failed_over: tuple[str, ...] = ()

    @property
    def cloud(self) -> bool:
        return self.kind == "cloud"

    @classmethod
    def from_headers(cls, headers: Mapping[str, str], asked_model: str) -> Where | None:
        upstream = headers.get(UPSTREAM_HEADER, "").strip()
        if not upstream:
            return None
        failed = headers.get(FAILED_OVER_HEADER, "")
        return cls(
            upstream=upstream,
            kind="cloud" if headers.get(KIND_HEADER, "").strip().lower() == "cloud" else "local",
            model=headers.get(MODEL_HEADER, "").strip() or asked_model,
            reason=headers.get(REASON_HEADER, "").strip(),
            failed_over=tuple(part.strip() for part in failed.split(";") if part.strip()),
        )


@dataclass
class Answer:
    model: str  # the model asked for
    route: str  # the route asked for (the profile's)
    # The answer as it came, joined when read (`text`): appending each token to one string copies it every time.
    tokens: list[str] = field(default_factory=list)
    where: Where | None = None
    outcome: Outcome = "ok"
    # For people: what failed and what to do. Empty when all went well.
    error: str = ""
    input_tokens: int | None = None
    output_tokens: int | None = None
    time_to_first_chunk: float | None = None
    duration: float = 0.0
    chunks: int = 0
    queue_ahead: int | None = None  # requests ahead of it when it joined the router's queue (None: it did not wait)

    @property
    def text(self) -> str:
        return "".join(self.tokens)


@dataclass(frozen=True)
class Failure:
    kind: str  # error_type in the metrics
    detail: str  # what failed: one clause, without its full stop
    advice: str  # what to do


def sentence(text: str) -> str:
    return f"{text[:1].upper()}{text[1:]}." if text else ""


def error_message(exc: openai.APIStatusError) -> str:
    """The router's own words from its OpenAI-shaped error body, else the client's summary."""
    body = exc.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
    return exc.message


def status_advice(exc: openai.APIStatusError) -> str:
    code = exc.status_code
    if code in {401, 403}:
        return "check ROUTER_API_KEY: it must be one of the router's ROUTER_API_KEYS"
    if code == 404:
        return "pick another model in the chat settings"
    if code == 429:
        if "retry after" in error_message(exc).lower():
            return ""  # the router's message already says when
        retry_after = exc.response.headers.get("retry-after", "").strip()
        return f"wait {retry_after + ' s' if retry_after.isdigit() else 'a moment'} and try again"
    if code in {400, 413, 422}:
        # The request was refused (e.g. over the model's context): the router's message says what to change.
        return "change the message or the chat settings as it says"
    if code in {502, 503, 504}:
        return "try again once an upstream serves the model (the router's /readyz lists each upstream's state)"
    return "try again; if it persists, check the router's log (`docker compose logs router`)"


ROUTER_GRACE_SECONDS = 5.0


def classify(exc: BaseException, router_url: str, timeout: float) -> Failure:
    """Turn a client exception into words: what failed and what to do."""
    if isinstance(exc, openai.APITimeoutError | httpx2.TimeoutException):
        # The read timeout applies to every wait for the next bytes: before the first token and between tokens.
        return Failure(
            "timeout",
            f"the router sent nothing for {timeout:g} s (REQUEST_TIMEOUT_SECONDS)",
            "try again; if the model is just slow, raise REQUEST_TIMEOUT_SECONDS",
        )
    if isinstance(exc, StreamError):
        if exc.reported:  # the router's words: which upstream, what failed
            return Failure("stream_error", str(exc).rstrip(". "), "try again; if it persists, check the router's log")
        return Failure("stream_error", f"the router {exc}", "try again; if it persists, check the router's log")
    # Transport errors while reading the stream come from the HTTP client itself, not wrapped by openai.
    if isinstance(exc, openai.APIConnectionError | httpx2.TransportError):
        return Failure(
            "connection", f"the router at {router_url} could not be reached or closed the connection", START_ROUTER
        )
    if isinstance(exc, openai.APIStatusError):
        # Without its full stop: the detail is one clause of a longer sentence.
        detail = f"the router answered HTTP {exc.status_code}: {error_message(exc).rstrip('. ')}"
        return Failure(f"http_{exc.status_code}", detail, status_advice(exc))
    name = type(exc).__name__
    return Failure(name, f"the request failed ({name})", "try again; if it persists, check the chat service's log")


class ChatService:
    def __init__(
        self, router_url: str, api_key: str, metrics: ChatMetrics, timeout: float, log_prompts: bool = False
    ) -> None:
        self.router_url = router_url
        self.router_name = urlsplit(router_url).netloc
        self.metrics = metrics
        # The router gives up on a silent upstream after REQUEST_TIMEOUT_SECONDS and says which one; the chat waits
        # a little longer, so that the user reads those words, and its own timeout only catches a hung router.
        self.timeout = timeout + ROUTER_GRACE_SECONDS
        self.log_prompts = log_prompts
        # One client (one connection pool) for the life of the service.
        self.client = openai.AsyncOpenAI(
            base_url=router_url,
            api_key=api_key,
            # Retries and failover are the router's: none hidden here that would only delay the answer.
            max_retries=0,
            timeout=openai.Timeout(self.timeout, connect=3.0),
        )

    async def close(self) -> None:
        await self.client.close()

    async def answer(
        self,
        model: str,
        route: str,
        messages: list[dict[str, str]],
        temperature: float,
        max_tokens: int,
        on_token: Callable[[str], Awaitable[None]],
        request_id: str | None = None,
        on_queue: OnQueue | None = None,
    ) -> Answer:
        """Stream an answer into `on_token`; while it waits in the router's queue, its place (requests ahead, the
        expected wait in seconds or None) into `on_queue`. Cancelling the calling task closes the request."""
        started = time.perf_counter()
        answer = Answer(model=model, route=route)
        if self.log_prompts:
            log.info("prompt", messages=messages)
        try:
            await self._stream(answer, messages, temperature, max_tokens, on_token, request_id, on_queue)
        except asyncio.CancelledError:
            answer.outcome = "stopped"
            self._observe(answer, started, "cancelled")
            self._finish(answer, started)
            raise
        except Exception as exc:  # any failure of the request or the stream, never shown as a traceback
            if isinstance(exc, openai.APIStatusError) and answer.where is None:
                # The router's refusals name the upstream that refused too (e.g. over the context): count it there.
                answer.where = Where.from_headers(exc.response.headers, answer.model)
            failure = classify(exc, self.router_url, self.timeout)
            self._observe(answer, started, failure.kind)
            if answer.chunks == 0:
                answer.outcome = "failed"
                answer.error = " ".join(filter(None, (sentence(failure.detail), sentence(failure.advice))))
            else:
                # The partial answer stays: say where it broke and what to do.
                answer.outcome = "interrupted"
                answer.error = f"The answer was interrupted after {answer.chunks} chunks: {failure.detail}. " + (
                    sentence(failure.advice)
                )
        else:
            self._observe(answer, started, "")
        self._finish(answer, started)
        return answer

    def _labels(self, answer: Answer) -> tuple[str, str, str, str]:
        where = answer.where
        cloud = where.cloud if where is not None else answer.route == "cloud"
        # gen_ai.provider.name: every local shape is Foundry Local; the cloud speaks the OpenAI API. The server is
        # the upstream that ran it; before the router named one, the router itself.
        server = where.upstream if where is not None else self.router_name
        return (OPERATION, "openai" if cloud else "foundry_local", answer.model, server)

    async def _stream(
        self,
        answer: Answer,
        messages: list[dict[str, str]],
        temperature: float,
        max_tokens: int,
        on_token: Callable[[str], Awaitable[None]],
        request_id: str | None,
        on_queue: OnQueue | None,
    ) -> None:
        request_started = time.perf_counter()
        headers = {ROUTE_HEADER: answer.route}
        if request_id:
            headers[REQUEST_ID_HEADER] = request_id
        request = self.client.chat.completions.with_streaming_response.create(
            model=answer.model,
            # The client walks typed parameters recursively to validate them (~1 ms of CPU per request for a
            # few turns of history, paid by every user at once under load); our messages are plain
            # role/content strings already, so they go in as they are.
            messages=[],
            extra_body={"messages": messages},
            temperature=temperature,
            max_tokens=max_tokens,
            stream=True,
            stream_options={"include_usage": True},
            extra_headers=headers,
        )
        # Leaving this block (done, failed or cancelled) closes the HTTP response, which stops the generation.
        async with request as response:
            answer.where = Where.from_headers(response.headers, answer.model)
            await self._read(answer, response.iter_lines(), request_started, on_token, on_queue)
        if answer.output_tokens is None:
            answer.output_tokens = answer.chunks  # no usage was sent: one token per chunk is close

    async def _read(
        self,
        answer: Answer,
        lines: AsyncIterator[str],
        request_started: float,
        on_token: Callable[[str], Awaitable[None]],
        on_queue: OnQueue | None,
    ) -> None:
        """The stream's lines into `answer` and `on_token`; the router's comments before the first token (its
        place in the queue, where it ran after a wait) into `on_queue` and `answer.where`."""
        labels = per_chunk = None
        last_chunk_at = request_started
        async for line in lines:
            chunk = parse_line(line)
            if chunk is None:
                if line.startswith(":") and answer.chunks == 0:  # an SSE comment: the router's words, if any
                    await self._note(answer, line, on_queue)
                continue
            if chunk.done:
                break
            if chunk.output_tokens is not None:
                answer.input_tokens, answer.output_tokens = chunk.input_tokens, chunk.output_tokens
            token = chunk.token
            if not token:
                continue
            now = time.perf_counter()
            if labels is None or per_chunk is None:  # labels now: a stream that waited learns where it ran late
                labels = self._labels(answer)
                per_chunk = self.metrics.time_per_output_chunk.labels(*labels)
                answer.time_to_first_chunk = now - request_started
                self.metrics.time_to_first_chunk.labels(*labels).observe(answer.time_to_first_chunk)
            else:
                per_chunk.observe(now - last_chunk_at)
            last_chunk_at = now
            answer.chunks += 1
            answer.tokens.append(token)
            await on_token(token)

    @staticmethod
    async def _note(answer: Answer, line: str, on_queue: OnQueue | None) -> None:
        if (place := queue_place(line)) is not None:
            if answer.queue_ahead is None:
                answer.queue_ahead = place[0]  # its place when it joined the queue, for the log
            if on_queue is not None:
                await on_queue(*place)
        elif (headers := where_headers(line)) is not None:
            answer.where = Where.from_headers(headers, answer.model) or answer.where

    def _observe(self, answer: Answer, started: float, error_type: str) -> None:
        labels = self._labels(answer)
        self.metrics.duration.labels(*labels, error_type).observe(time.perf_counter() - started)
        if answer.input_tokens is not None:
            self.metrics.token_usage.labels(*labels, "input").observe(answer.input_tokens)
        if answer.output_tokens is not None:
            self.metrics.token_usage.labels(*labels, "output").observe(answer.output_tokens)

    def _finish(self, answer: Answer, started: float) -> None:
        answer.duration = time.perf_counter() - started
        where = answer.where
        log.info(
            "chat_answer",
            outcome=answer.outcome,
            model=answer.model,
            route=answer.route,
            upstream=where.upstream if where else None,
            upstream_kind=where.kind if where else None,
            answered_by=where.model if where else None,
            route_reason=where.reason if where else None,
            failed_over=list(where.failed_over) if where and where.failed_over else None,
            queue_ahead=answer.queue_ahead,
            ttft_ms=round(answer.time_to_first_chunk * 1000, 2) if answer.time_to_first_chunk is not None else None,
            duration_ms=round(answer.duration * 1000, 2),
            input_tokens=answer.input_tokens,
            output_tokens=answer.output_tokens,
            error=answer.error or None,
        )
