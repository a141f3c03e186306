"""History within the context budget: the newest turns are kept, the oldest dropped whole."""

from __future__ import annotations

import pytest

from foundry_chat.prompt_window import Turn, build_prompt, estimate_tokens

pytestmark = pytest.mark.unit


def test_everything_fits() -> None:
    turns = [Turn("hi", "hello"), Turn("how are you", "fine")]
    prompt = build_prompt("be brief", turns, "and you?", 1000)
    assert [m["role"] for m in prompt.messages] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert prompt.messages[-1]["content"] == "and you?"
    assert prompt.dropped_turns == 0


def test_oldest_turns_are_dropped_first() -> None:
    turns = [Turn(f"question {i} " + "x" * 400, f"answer {i} " + "y" * 400) for i in range(10)]
    budget = estimate_tokens("sys") + estimate_tokens("now?") + 3 * (2 * estimate_tokens("question 0 " + "x" * 400))
    prompt = build_prompt("sys", turns, "now?", budget)
    assert prompt.dropped_turns == 7
    kept = [m["content"][:10] for m in prompt.messages if m["role"] == "user"]
    assert kept == ["question 7", "question 8", "question 9", "now?"]
    assert prompt.tokens <= budget


def test_question_and_system_prompt_are_always_sent() -> None:
    prompt = build_prompt("sys", [Turn("a" * 1000, "b" * 1000)], "q" * 2000, 10)
    assert [m["role"] for m in prompt.messages] == ["system", "user"]
    assert prompt.dropped_turns == 1


def test_no_system_prompt() -> None:
    prompt = build_prompt("", [], "hello", 100)
    assert prompt.messages == [{"role": "user", "content": "hello"}]


def test_estimate_grows_with_length() -> None:
    assert estimate_tokens("") < estimate_tokens("abcd") < estimate_tokens("abcd" * 100)
