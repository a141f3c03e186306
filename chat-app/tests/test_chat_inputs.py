"""What users type: empty, too long, control characters."""

from __future__ import annotations

import pytest

from foundry_chat.inputs import check_input

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("text", ["", "   ", "\n\t \r\n"])
def test_empty_or_whitespace_is_rejected_with_a_hint(text: str) -> None:
    checked = check_input(text, 100)
    assert checked.text == ""
    assert "empty" in checked.rejection


def test_only_control_characters() -> None:
    checked = check_input("\x00\x01\x1b", 100)
    assert "control characters" in checked.rejection


def test_control_characters_and_nul_are_removed() -> None:
    checked = check_input("he\x00llo\x07 wor\x1bld\r\nbye\x7f", 100)
    assert checked.text == "hello world\nbye"
    assert checked.removed_control_characters == 4
    assert checked.rejection == ""


def test_over_the_limit_names_the_limit() -> None:
    checked = check_input("x" * 101, 100)
    assert "101 characters" in checked.rejection
    assert "100" in checked.rejection and "MAX_INPUT_CHARS" in checked.rejection


def test_exactly_the_limit_is_fine() -> None:
    assert check_input("x" * 100, 100).text == "x" * 100


def test_non_text_is_rejected() -> None:
    assert check_input(None, 100).rejection
