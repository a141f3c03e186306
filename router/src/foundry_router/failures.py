"""What an upstream's answer means for the request and for the upstream, decided in one place.

- An answer (2xx) goes to the client.
- A refusal of the request (a 4xx, or an error that blames the request: `invalid_request_error`) goes to the client
  as the upstream said it: the client has something to change, and another upstream would refuse it too. It never
  counts against the upstream.
- An upstream's own failure (refused connection, timeout, a 5xx that does not blame the request, a stream cut or
  empty before its first event) moves the request to the next candidate and marks the upstream down.
- Some answers move the request on without blaming the upstream: a 404 for the model (its model list is stale), 408
  and 429 (busy), an error event before the first token, and an answer that it does not serve the route.
"""

from __future__ import annotations

from foundry_common.protocol import error_message, error_of
from foundry_router.operations import Operation, unserved_answer

MOVE_ON_STATUSES = frozenset({404, 408, 429})  # worth another upstream, and no fault of this one

# What to do about a failure, said once in the final refusal when no upstream could answer.
ADVICE = {
    "timeout": "If it is just slow, raise REQUEST_TIMEOUT_SECONDS.",
    "connection": "Check that it is running (`docker compose ps`, or start Foundry Local on the host).",
    "other": "Try again; if it persists, check the upstream's log.",
}


class UpstreamFailure(Exception):
    """This upstream could not answer; the next one may. `mark_down`: the failure is the upstream's own."""

    def __init__(self, detail: str, kind: str, mark_down: bool) -> None:
        super().__init__(detail)
        self.detail, self.kind, self.mark_down = detail, kind, mark_down


def blames_request(error: dict | None) -> bool:
    """An OpenAI error that says the request is at fault, whatever the status it came with."""
    return error is not None and error.get("type") == "invalid_request_error"


def failure_of(operation: Operation, code: int, body: bytes) -> UpstreamFailure | None:
    """For an answer of status `code` >= 400: the failure that moves the request on, or None when the client gets the
    answer as it is (a refusal of the request)."""
    if said := unserved_answer(operation, code, body):
        return UpstreamFailure(said, "unserved", False)
    if code in MOVE_ON_STATUSES:
        return UpstreamFailure(f"answered HTTP {code}: {error_message(body)}", f"http_{code}", False)
    if code >= 500 and not blames_request(error_of(body)):
        return UpstreamFailure(f"answered HTTP {code}: {error_message(body)}", f"http_{code}", True)
    return None


def transport_failure(exc: BaseException, timeout: float) -> UpstreamFailure:
    if isinstance(exc, TimeoutError):
        return UpstreamFailure(f"sent nothing for {timeout:g} s (REQUEST_TIMEOUT_SECONDS)", "timeout", True)
    return UpstreamFailure(f"could not be reached or closed the connection ({type(exc).__name__})", "connection", True)


def stream_failure(error: dict) -> UpstreamFailure:
    """An error event before the first token that does not blame the request: the next upstream may do better."""
    return UpstreamFailure(f"reported an error before the first token: {error['message']}", "stream_error", False)
