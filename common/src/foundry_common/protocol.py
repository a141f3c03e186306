"""The wire contract between the services, written once: headers one service sets and another reads or passes on,
the OpenAI routes, and the OpenAI error body (written and read)."""

from __future__ import annotations

import json
from typing import Literal

# Set by a client: which upstreams may answer. Read by the router, never passed on.
ROUTE_HEADER = "x-foundry-route"
Route = Literal["local", "cloud", "auto"]
ROUTES: tuple[Route, ...] = ("local", "cloud", "auto")
# Set by the router on every answer: where it ran and why.
UPSTREAM_HEADER = "x-foundry-upstream"
UPSTREAM_KIND_HEADER = "x-foundry-upstream-kind"  # local or cloud
MODEL_HEADER = "x-foundry-model"
ROUTE_REASON_HEADER = "x-foundry-route-reason"
FAILED_OVER_HEADER = "x-foundry-failed-over"  # the upstreams that failed first, and how
MAX_TOKENS_HEADER = "x-foundry-max-tokens"  # the max_tokens the router chose for a request that sent none
FOUNDRY_HEADER_PREFIX = "x-foundry-"
# On an answer served without the request's `tools` (the model publishes no tool markers): why, in one line. Set by
# the embedded gateway; the router passes it on to the client, unlike the upstream's other X-Foundry-* headers.
TOOLS_IGNORED_HEADER = "x-foundry-tools-ignored"
# Upstream headers of ours that tell the client about its own request, and so cross the router.
PASSED_ON_HEADERS = frozenset({TOOLS_IGNORED_HEADER})

# The OpenAI routes, by path: what the router serves (and passes on) and the embedded gateway serves in part.
MODELS_ROUTE = "/v1/models"
CHAT_ROUTE = "/v1/chat/completions"
COMPLETIONS_ROUTE = "/v1/completions"
EMBEDDINGS_ROUTE = "/v1/embeddings"


# The error code of a request that does not fit the model's context. Its error carries CONTEXT_FIELDS as numbers
# (those known): a client (the router's max_tokens fitting) reads them instead of the sentence.
CONTEXT_LENGTH_EXCEEDED = "context_length_exceeded"
CONTEXT_FIELDS = ("prompt_tokens", "max_tokens", "context_tokens", "room")


def error_body(
    message: str, code: str, error_type: str = "invalid_request_error", param: str | None = None, **fields: object
) -> bytes:
    """OpenAI's error shape, so OpenAI clients surface the message as it is, plus `fields` for programs (e.g. the
    counts of a context overflow). ASCII-escaped JSON: a message that quotes the client's input always encodes."""
    error = {"message": message, "type": error_type, "param": param, "code": code, **fields}
    return json.dumps({"error": error}).encode()


def error_of(body: bytes) -> dict | None:
    """The `error` object of an OpenAI error body, or None when the body is not in that shape."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    error = data.get("error") if isinstance(data, dict) else None
    return error if isinstance(error, dict) and isinstance(error.get("message"), str) else None


def error_message(body: bytes, limit: int = 1000) -> str:
    """What an error body says, for people: its OpenAI message, else its text (cut to `limit`)."""
    if (error := error_of(body)) is not None:
        return error["message"][:limit]
    try:
        data = json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace").strip()[:limit] or "no details"
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        return data["error"][:limit]
    return json.dumps(data)[:limit]


# A request waiting for a free upstream learns its place. On a stream that waits, the router starts the response at
# once and sends SSE comments before the first event (SSE clients, the openai SDKs and Open WebUI skip comments):
#   : foundry-queue {"ahead": 2, "wait_seconds": 6.5}
# again whenever the place changes, and as a heartbeat. Every answer that waited carries the headers below (on a
# stream that waited they are sent with the early start, so the first is the place on arrival).
QUEUE_COMMENT_PREFIX = ": foundry-queue "
QUEUE_AHEAD_HEADER = "x-foundry-queue-ahead"  # requests ahead of this one when it joined the queue
QUEUE_WAIT_HEADER = "x-foundry-queue-wait-ms"  # on a whole answer: how long it waited for a slot


def queue_comment(ahead: int, wait_seconds: float | None) -> bytes:
    """One SSE comment event: the place in the queue (requests ahead) and the expected wait (None: unknown yet)."""
    wait = None if wait_seconds is None else round(wait_seconds, 1)
    return f"{QUEUE_COMMENT_PREFIX}{json.dumps({'ahead': ahead, 'wait_seconds': wait})}\n\n".encode()


def queue_place(line: str | bytes) -> tuple[int, float | None] | None:
    """(ahead, wait_seconds) from a line of a stream, or None when it is not our queue comment."""
    text = line.decode("utf-8", "replace") if isinstance(line, bytes) else line
    if not text.startswith(QUEUE_COMMENT_PREFIX):
        return None
    try:
        place = json.loads(text[len(QUEUE_COMMENT_PREFIX) :])
        ahead, wait = int(place["ahead"]), place.get("wait_seconds")
        return ahead, (None if wait is None else float(wait))
    except (ValueError, KeyError, TypeError):
        return None


# A stream that started while it waited in the queue had no upstream yet when its headers went out: where it ran
# (the X-Foundry-* headers a whole answer has) comes as one more comment, once it has a slot, before the first event.
WHERE_COMMENT_PREFIX = ": foundry-where "


def where_comment(headers: dict[str, str]) -> bytes:
    """One SSE comment event with the router's X-Foundry-* headers of an answer (other headers are left out)."""
    ours = {name.lower(): value for name, value in headers.items() if name.lower().startswith(FOUNDRY_HEADER_PREFIX)}
    return f"{WHERE_COMMENT_PREFIX}{json.dumps(ours)}\n\n".encode()


def where_headers(line: str | bytes) -> dict[str, str] | None:
    """The headers of a where comment (as `where_comment` wrote them), or None when the line is not one."""
    text = line.decode("utf-8", "replace") if isinstance(line, bytes) else line
    if not text.startswith(WHERE_COMMENT_PREFIX):
        return None
    try:
        headers = json.loads(text[len(WHERE_COMMENT_PREFIX) :])
    except ValueError:
        return None
    if not isinstance(headers, dict):
        return None
    return {str(name): str(value) for name, value in headers.items()}
