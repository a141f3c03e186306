"""What a stored conversation gives back to the model (transcript.py): pure functions, no database."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from foundry_chat.prompt_window import Turn
from foundry_chat.transcript import IN_PROGRESS, answer_record, turns_from_steps

pytestmark = pytest.mark.unit

FOOTER = "\n\n*— tiny on foundry-local:5273 (local) · 16 tokens · 0.2 s*"


def question(text: str) -> dict:
    return {"type": "user_message", "output": text}


def answer(text: str, outcome: str = "ok", footer: str = FOOTER) -> dict:
    return {"type": "assistant_message", "output": text + footer, "metadata": answer_record(None, text, outcome)}


def status(text: str) -> dict:
    return {"type": "assistant_message", "output": text, "metadata": {}}


def test_turns_are_each_question_with_its_answer_without_footers_or_notices() -> None:
    steps = [
        status("_History is off_"),
        question("one"),
        {"type": "run", "output": ""},
        answer("first answer"),
        question("refused: too long"),
        status("Your message is too long"),
        question("two"),
        answer("partial", outcome=IN_PROGRESS),
        question("three"),
        answer("", outcome="failed", footer="Could not answer: …"),
    ]
    assert turns_from_steps(steps) == [Turn("one", "first answer"), Turn("two", "partial")]


def test_an_answer_stopped_keeps_its_text_and_drops_the_stop_note() -> None:
    stopped = answer(
        "half an ans", outcome="stopped", footer="\n\n*— stopped; the rest of the answer was not generated.*"
    )
    assert turns_from_steps([question("q"), stopped]) == [Turn("q", "half an ans")]


@given(st.lists(st.tuples(st.text(min_size=1), st.text(min_size=1)), max_size=8), st.text())
def test_any_conversation_comes_back_as_it_was_sent(pairs: list[tuple[str, str]], footer: str) -> None:
    steps = [step for user, reply in pairs for step in (question(user), answer(reply, footer=footer))]
    assert turns_from_steps(steps) == [Turn(user, reply) for user, reply in pairs]
