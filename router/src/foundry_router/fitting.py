"""A max_tokens for requests that send none (Open WebUI sends none).

Without one, a Foundry Local runtime asks for 2048 output tokens and a small context refuses the request.
The router cannot count tokens with every model's tokenizer, so it estimates the prompt on the safe side
and, when the upstream still refuses and says the exact counts, retries once with the room it names.
"""

from __future__ import annotations

from foundry_common.chat_request import context_room, estimate_prompt_tokens
from foundry_common.protocol import error_of

__all__ = ["estimate_prompt_tokens", "fit_max_tokens", "has_max_tokens", "room_from_refusal"]


def fit_max_tokens(context_length: int, prompt_tokens: int, default: int) -> int:
    """At most `default`, and no more than the room the prompt leaves in the context (at least 1)."""
    return max(1, min(default, context_length - prompt_tokens))


def room_from_refusal(body: bytes) -> int | None:
    """The output tokens that fit, from an upstream's context-length refusal (its error body); None if it names no
    counts. The fields are read, not the sentence (foundry_common.chat_request.context_room)."""
    error = error_of(body)
    room = context_room(error) if error is not None else None
    return room if room is not None and room > 0 else None


def has_max_tokens(payload: dict) -> bool:
    return payload.get("max_tokens") is not None or payload.get("max_completion_tokens") is not None
