"""A max_tokens for requests that send none (Open WebUI sends none).

Without one, a Foundry Local runtime asks for 2048 output tokens and a small context refuses the request.
The router cannot count tokens with every model's tokenizer, so it estimates the prompt on the safe side
and, when the upstream still refuses and says the exact counts, retries once with the room it names.
"""

from __future__ import annotations

import re

# About three characters per token for English text with BPE tokenizers; rounding up keeps us on the safe side.
CHARS_PER_TOKEN = 3
TOKENS_PER_MESSAGE = 4  # role markers and separators of a chat template

# The embedded gateway's wording, and the Foundry Local runtime's own.
_GATEWAY = re.compile(r"The prompt \((\d+) tokens\).*?context of (\d+) tokens", re.DOTALL)
_RUNTIME = re.compile(r"\((\d+) input \+ \d+ output\).*?context length of (\d+)", re.DOTALL)


def estimate_prompt_tokens(messages: object) -> int:
    """A generous token count of the messages' text (strings and text parts)."""
    if not isinstance(messages, list):
        return 0
    chars = 0
    for message in messages:
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            chars += sum(
                len(p.get("text", "")) for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)
            )
    return -(-chars // CHARS_PER_TOKEN) + TOKENS_PER_MESSAGE * len(messages)


def fit_max_tokens(context_length: int, prompt_tokens: int, default: int) -> int:
    """At most `default`, and no more than the room the prompt leaves in the context (at least 1)."""
    return max(1, min(default, context_length - prompt_tokens))


def room_from_refusal(message: str) -> int | None:
    """The output tokens that fit, from an upstream's context-length refusal; None if it names no counts."""
    match = _GATEWAY.search(message) or _RUNTIME.search(message)
    if match is None:
        return None
    prompt, context = int(match.group(1)), int(match.group(2))
    room = context - prompt
    return room if room > 0 else None


def has_max_tokens(payload: dict) -> bool:
    return payload.get("max_tokens") is not None or payload.get("max_completion_tokens") is not None
