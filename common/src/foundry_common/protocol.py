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
