"""The prompt window: which earlier turns of a session fit the context budget; the oldest whole turns go first. (The
stored history, the database, is persistence.py.)

Token counts are estimates (we have no tokenizer for every upstream's model): about three characters per
token (foundry_common.chat_request.CHARS_PER_TOKEN, as the router estimates) plus a few tokens of per-message
framing, which errs on the side of dropping a turn too early.
"""

from __future__ import annotations

from dataclasses import dataclass

from foundry_common.chat_request import CHARS_PER_TOKEN  # the one estimate, shared with the router

MESSAGE_OVERHEAD_TOKENS = 4


def estimate_tokens(text: str) -> int:
    return -(-len(text) // CHARS_PER_TOKEN) + MESSAGE_OVERHEAD_TOKENS


@dataclass(frozen=True)
class Turn:
    user: str
    assistant: str


@dataclass(frozen=True)
class Prompt:
    messages: list[dict[str, str]]
    dropped_turns: int
    tokens: int


def build_prompt(system_prompt: str, turns: list[Turn], question: str, budget_tokens: int) -> Prompt:
    """System prompt + as many of the latest turns as fit + the question, within `budget_tokens`.

    The system prompt and the question are always sent (the question's length is limited before this).
    """
    head = [{"role": "system", "content": system_prompt}] if system_prompt else []
    used = sum(estimate_tokens(m["content"]) for m in head) + estimate_tokens(question)
    kept: list[Turn] = []
    for turn in reversed(turns):
        cost = estimate_tokens(turn.user) + estimate_tokens(turn.assistant)
        if used + cost > budget_tokens:
            break
        kept.append(turn)
        used += cost
    kept.reverse()
    body = []
    for turn in kept:
        body += [{"role": "user", "content": turn.user}, {"role": "assistant", "content": turn.assistant}]
    messages = [*head, *body, {"role": "user", "content": question}]
    return Prompt(messages=messages, dropped_turns=len(turns) - len(kept), tokens=used)
