"""The OpenAI operations the router forwards, and which upstreams do not serve one.

Chat completions are what every Foundry Local shape serves. Text completions and embeddings are passed on as they
are, to an upstream that serves them: not the embedded gateway (chat only), and the Foundry Local runtime's own
web service only for an embedding model. Which upstream serves which is learnt from the answers: one that answers
404 (not "model_not_found"), 405 or 501 for the route does not serve it for that model, and is not asked again
until its next probe.
"""

from __future__ import annotations

from dataclasses import dataclass
from http import HTTPStatus

from foundry_common.protocol import CHAT_ROUTE, COMPLETIONS_ROUTE, EMBEDDINGS_ROUTE, error_message
from foundry_router.routing import Target
from foundry_router.upstreams import UpstreamStatus

# Answers that say "no such route (for this model)" rather than "no such model".
UNSERVED_STATUSES = frozenset({404, 405, 501})


@dataclass(frozen=True)
class Operation:
    name: str  # gen_ai_operation_name (OTel GenAI): the metrics' label
    route: str  # the client's path
    log_event: str
    prompt_field: str  # what LOG_PROMPTS logs
    advice: str = ""  # when no upstream serves it: what to do

    @property
    def path(self) -> str:
        """After the upstream's OpenAI base URL (…/v1)."""
        return self.route.removeprefix("/v1")

    @property
    def chat(self) -> bool:
        return self.route == CHAT_ROUTE


CHAT = Operation("chat", CHAT_ROUTE, "chat_completion", "messages")
TEXT_COMPLETION = Operation(
    "text_completion", COMPLETIONS_ROUTE, "text_completion", "prompt",
    "Foundry Local serves chat completions only: send the prompt as a chat message to POST /v1/chat/completions, "
    "or add an upstream that serves /v1/completions to FOUNDRY_LOCAL_URLS.",
)  # fmt: skip
EMBEDDINGS = Operation(
    "embeddings", EMBEDDINGS_ROUTE, "embeddings", "input",
    "Foundry Local serves embeddings only for embedding models, from its own web service (the embedded gateway "
    "serves none): load an embedding model there, or add an upstream that serves /v1/embeddings to "
    "FOUNDRY_LOCAL_URLS.",
)  # fmt: skip
OPERATIONS = (CHAT, TEXT_COMPLETION, EMBEDDINGS)


def unserved_answer(operation: Operation, code: int, body: bytes) -> str:
    """What the upstream said, when its answer means it does not serve this route for the model ("" otherwise).
    Chat's 404 is about the model (a stale model list), as before."""
    if operation.chat or code not in UNSERVED_STATUSES or (code == 404 and b'"model_not_found"' in body):
        return ""
    return f"{code} {HTTPStatus(code).phrase}: {error_message(body)[:200]}"


def remember(status: UpstreamStatus, operation: Operation, target: Target, said: str) -> str:
    """Note that this upstream does not serve the route for the model (until its next probe); the note for people."""
    status.unserved[(operation.route, target.model)] = said
    return f"{target.upstream.base_url} ({said})"


def skip_unserved(
    statuses: list[UpstreamStatus], operation: Operation, targets: tuple[Target, ...]
) -> tuple[list[Target], list[str]]:
    """The targets not known to refuse the route for their model, and notes on the others (not asked again)."""
    by_upstream = {s.upstream: s for s in statuses}
    kept, notes = [], []
    for target in targets:
        status = by_upstream.get(target.upstream)
        said = status.unserved.get((operation.route, target.model)) if status is not None else None
        if said is None:
            kept.append(target)
        else:
            notes.append(f"{target.upstream.base_url} ({said}; remembered from an earlier request)")
    return kept, notes
