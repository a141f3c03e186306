"""What users type: empty, too long, control characters, broken Unicode."""

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


def test_lone_surrogates_are_removed_and_counted() -> None:
    # What JSON's "\ud800" escapes become: not encodable as UTF-8, so they would break the upstream request.
    checked = check_input("hel\ud800lo\udfff world\ud83d", 100)
    assert checked.text == "hello world"
    assert checked.removed_invalid_characters == 3
    assert checked.removed_control_characters == 0
    checked.text.encode("utf-8")  # would raise with a surrogate left


def test_non_characters_are_removed() -> None:
    checked = check_input("a\ufffeb\uffffc\ufdd0d\U0010ffffe", 100)
    assert checked.text == "abcde"
    assert checked.removed_invalid_characters == 4


@pytest.mark.parametrize("text", ["\ud800", " \udfff\n\ufffe ", "\ud800\udc00"])
def test_only_invalid_unicode_says_so(text: str) -> None:
    checked = check_input(text, 100)
    assert checked.text == ""
    assert "invalid Unicode" in checked.rejection and "empty" not in checked.rejection


def test_only_control_and_invalid_characters_names_both() -> None:
    checked = check_input("\x00\ud800", 100)
    assert "control characters and invalid Unicode" in checked.rejection


@pytest.mark.parametrize(
    "text",
    [
        "Emoji 😀 👩‍💻 🇫🇷 👍🏽",  # supplementary planes, ZWJ sequences, flags, skin tones
        "中文，日本語のテキスト，한국어",
        "مرحبا بالعالم — שלום עולם",  # right-to-left
        "e\u0301 n\u0303 a\u030a\u0323",  # combining marks
        "\u200f\u202bRTL marks\u202c and \ufeff zero-width no-break space",
    ],
)
def test_real_text_is_kept_intact(text: str) -> None:
    checked = check_input(text, 1000)
    assert checked.text == text
    assert checked.removed_invalid_characters == checked.removed_control_characters == 0
