"""Checks on what a user typed, before anything goes upstream."""

from __future__ import annotations

import re
from dataclasses import dataclass

# C0 controls (NUL included), DEL and C1 controls; tab and newline are text.
CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


@dataclass(frozen=True)
class CheckedInput:
    text: str = ""
    # Set when the message must not be sent: what to tell the user instead.
    rejection: str = ""
    removed_control_characters: int = 0


def check_input(raw: object, max_chars: int) -> CheckedInput:
    if not isinstance(raw, str):
        return CheckedInput(rejection="Only text messages are supported: type a question.")
    text = raw.replace("\r\n", "\n").replace("\r", "\n")
    text, removed = CONTROL_CHARACTERS.subn("", text)
    text = text.strip()
    if not text:
        hint = "Your message was empty. Type a question, or pick one of the starters."
        if removed:
            hint = "Your message held only control characters, which are removed. Type a question."
        return CheckedInput(rejection=hint, removed_control_characters=removed)
    if len(text) > max_chars:
        return CheckedInput(
            rejection=(
                f"Your message is {len(text):,} characters long; the limit is {max_chars:,} (MAX_INPUT_CHARS). "
                "Shorten it or split it into several messages."
            ),
            removed_control_characters=removed,
        )
    return CheckedInput(text=text, removed_control_characters=removed)
