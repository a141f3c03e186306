"""What a stored conversation says: the turns to send again, and what each answer records. No Chainlit here.

Each answer is stored as Chainlit shows it (the text and its footer); its step's metadata says where it ran and
how it ended, and how much of the text is the model's own (`text_chars`), so that a resumed conversation sends
the model its own words, never the footers or status messages.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from foundry_chat.chat import Answer
from foundry_chat.prompt_window import Turn

ANSWER_KEY = "answer"
# Written with the first saved part of an answer and replaced when it ends: a process killed mid-answer leaves
# the answer stored as interrupted, with the text of its last checkpoint.
IN_PROGRESS = "interrupted"


def answer_record(answer: Answer | None, text: str, outcome: str) -> dict[str, Any]:
    """The step metadata of an answer (also of a partial one, before `answer` is known)."""
    record: dict[str, Any] = {"outcome": outcome, "text_chars": len(text)}
    if answer is None:
        return {ANSWER_KEY: record}
    where = answer.where
    record |= {
        "model": where.model if where else answer.model,
        "upstream": where.upstream if where else None,
        "upstream_kind": where.kind if where else None,
        "route": answer.route,
        "input_tokens": answer.input_tokens,
        "output_tokens": answer.output_tokens,
        "ttft_ms": round(answer.time_to_first_chunk * 1000, 1) if answer.time_to_first_chunk is not None else None,
        "duration_ms": round(answer.duration * 1000, 1),
    }
    if answer.error:
        record["error"] = answer.error
    return {ANSWER_KEY: record}


def answer_of(step: Mapping[str, Any]) -> dict[str, Any] | None:
    metadata = step.get("metadata") or {}
    record = metadata.get(ANSWER_KEY) if isinstance(metadata, Mapping) else None
    return record if isinstance(record, dict) else None


def turns_from_steps(steps: Iterable[Mapping[str, Any]]) -> list[Turn]:
    """The question/answer pairs of a stored thread, in order: each user message with the answer that followed.

    A question without an answer (refused, failed, or the process died before the first token) is left out,
    as it is from the live history.
    """
    turns: list[Turn] = []
    question: str | None = None
    for step in steps:
        kind = step.get("type")
        if kind == "user_message":
            question = step.get("output") or ""
            continue
        record = answer_of(step)
        if kind != "assistant_message" or record is None or question is None:
            continue
        text = (step.get("output") or "")[: int(record.get("text_chars") or 0)]
        if text:
            turns.append(Turn(question, text))
        question = None
    return turns


def session_metadata(chat_profile: str | None, chat_settings: Mapping[str, Any] | None) -> dict[str, Any]:
    """What a resumed thread needs besides its steps: Chainlit restores these two keys itself on resume."""
    return {"chat_profile": chat_profile, "chat_settings": dict(chat_settings or {})}
