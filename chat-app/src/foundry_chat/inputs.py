"""Checks on what a user typed, before anything goes upstream."""

from __future__ import annotations

import re
from dataclasses import dataclass

# C0 controls (NUL included), DEL and C1 controls; tab and newline are text.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# Broken Unicode: lone UTF-16 surrogates (JSON's "\ud800" escape arrives as one; it cannot be encoded as UTF-8,
# so the upstream request, the logs and the browser would all fail on it) and the 66 non-characters (U+FDD0..U+FDEF
# and the last two code points of every plane, e.g. U+FFFE, U+FFFF), which Unicode reserves for internal use.
# Emoji, CJK, right-to-left text and combining marks are ordinary characters and stay.
INVALID_CHARACTERS = re.compile(
    r"[\ud800-\udfff\ufdd0-\ufdef" + "".join(rf"\U{plane:04x}fffe\U{plane:04x}ffff" for plane in range(17)) + "]"
)


@dataclass(frozen=True)
class CleanText:
    text: str
    removed_control_characters: int
    removed_invalid_characters: int


def clean_text(text: str) -> CleanText:
    """Unix newlines; control characters and broken Unicode removed (and counted). Not stripped."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text, controls = CONTROL_CHARACTERS.subn("", text)
    text, invalid = INVALID_CHARACTERS.subn("", text)
    return CleanText(text, controls, invalid)


@dataclass(frozen=True)
class CheckedInput:
    text: str = ""
    # Set when the message must not be sent: what to tell the user instead.
    rejection: str = ""
    removed_control_characters: int = 0
    removed_invalid_characters: int = 0


def removed_what(controls: int, invalid: int) -> str:
    kinds = []
    if controls:
        kinds.append("control characters")
    if invalid:
        kinds.append("invalid Unicode characters (such as unpaired surrogates)")
    return " and ".join(kinds)


def check_input(raw: object, max_chars: int) -> CheckedInput:
    if not isinstance(raw, str):
        return CheckedInput(rejection="Only text messages are supported: type a question.")
    cleaned = clean_text(raw)
    counts = {
        "removed_control_characters": cleaned.removed_control_characters,
        "removed_invalid_characters": cleaned.removed_invalid_characters,
    }
    text = cleaned.text.strip()
    if not text:
        hint = "Your message was empty. Type a question, or pick one of the starters."
        what = removed_what(cleaned.removed_control_characters, cleaned.removed_invalid_characters)
        if what:
            hint = f"Your message held only {what}, which are removed. Type a question."
        return CheckedInput(rejection=hint, **counts)
    if len(text) > max_chars:
        return CheckedInput(
            rejection=(
                f"Your message is {len(text):,} characters long; the limit is {max_chars:,} (MAX_INPUT_CHARS). "
                "Shorten it or split it into several messages."
            ),
            **counts,
        )
    return CheckedInput(text=text, **counts)
