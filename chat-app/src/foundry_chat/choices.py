"""The per-session chat settings (model, temperature, answer length, system prompt), checked before use.

They come from the browser over Socket.IO (`chat_settings_change`) and Chainlit stores whatever arrives: any
JSON value, not only what the settings panel's widgets can produce. A bad value is reported to the user by name,
with the allowed range, instead of failing somewhere later (or upstream).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from foundry_chat.inputs import clean_text
from foundry_chat.settings import TEMPERATURE_MAX, TEMPERATURE_MIN, Settings

MIN_ANSWER_TOKENS = 16
# Model ids are short ("phi-4-mini-instruct-generic-cpu:5"); this only keeps a pasted essay out of messages.
MAX_MODEL_CHARS = 256
SHOWN_CHARS = 24


def max_tokens_bounds(settings: Settings) -> tuple[int, int]:
    """The answer-length slider's range; MAX_TOKENS (its initial value) is always inside it."""
    return min(MIN_ANSWER_TOKENS, settings.max_tokens), max(4096, settings.max_tokens)


def system_prompt_limit(settings: Settings, default_prompt: str) -> int:
    # As long as a message may be, but never shorter than the default the panel itself offers.
    return max(settings.max_input_chars, len(default_prompt))


@dataclass(frozen=True)
class Choices:
    # Usable values: a bad or missing one is replaced by its default (and listed in `problems`).
    model: str | None
    temperature: float
    max_tokens: int
    system_prompt: str
    # One line per bad setting, for the user: which one, what it holds, what it must be.
    problems: tuple[str, ...] = ()
    # The labels of the bad settings, for the log.
    bad: tuple[str, ...] = ()

    @property
    def rejection(self) -> str:
        if not self.problems:
            return ""
        lines = ["**Your message was not sent**: the chat settings hold a value the service cannot use."]
        lines += [f"- {problem}" for problem in self.problems]
        them = "it" if len(self.problems) == 1 else "them"
        lines.append(
            f"Fix {them} in the chat settings (the sliders icon next to the message box) and send your message again."
        )
        return "\n".join(lines)


def shown(value: object) -> str:
    """A short, safe rendering of a value someone sent: never huge, never broken Unicode, never markup."""
    if value is None:
        return "empty (null)"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, int):
        # int → str is limited to 4,300 digits and a long number says nothing more.
        return f"`{value}`" if abs(value) < 10**15 else "a very large number"
    if isinstance(value, float):
        return f"`{value:g}`"
    if isinstance(value, str):
        text = " ".join(clean_text(value).text.split()).replace("`", "'")
        if len(text) > SHOWN_CHARS:
            return f"a text of {len(value):,} characters"
        return f"the text `{text}`" if text else "an empty text"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return f"a value of type {type(value).__name__}"


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_choices(chosen: object, settings: Settings, default_prompt: str) -> Choices:
    """Check the session's chat settings; `default_prompt` is the profile's system prompt (the panel's default)."""
    values: Mapping = chosen if isinstance(chosen, Mapping) else {}
    problems: list[str] = []
    bad: list[str] = []

    def problem(label: str, value: object, rule: str) -> None:
        problems.append(f"**{label}** is {shown(value)}: {rule}")
        bad.append(label)

    # Model: absent or null means "the default"; a name that is not loaded is the caller's business (it knows
    # which models are loaded now).
    model = values.get("model")
    if model is not None and not (
        isinstance(model, str) and model.strip() and len(model) <= MAX_MODEL_CHARS and clean_text(model).text == model
    ):
        problem("Model", model, "it must be the name of a loaded model; pick one in the list.")
        model = None

    temperature = values.get("temperature", settings.temperature)
    # Comparisons, not float(): they are exact for any int and false for NaN.
    if not (is_number(temperature) and TEMPERATURE_MIN <= temperature <= TEMPERATURE_MAX):
        problem("Temperature", temperature, f"it must be a number from {TEMPERATURE_MIN} to {TEMPERATURE_MAX}.")
        temperature = settings.temperature

    low, high = max_tokens_bounds(settings)
    max_tokens = values.get("max_tokens", settings.max_tokens)
    whole = isinstance(max_tokens, int) or (isinstance(max_tokens, float) and max_tokens.is_integer())
    if not (is_number(max_tokens) and whole and low <= max_tokens <= high):
        problem("Max answer tokens", max_tokens, f"it must be a whole number from {low} to {high}.")
        max_tokens = settings.max_tokens

    system_prompt = values.get("system_prompt", default_prompt)
    limit = system_prompt_limit(settings, default_prompt)
    if system_prompt is None:  # a cleared text field: no system prompt, as before
        system_prompt = ""
    if not isinstance(system_prompt, str):
        problem("System prompt", system_prompt, "it must be text.")
        system_prompt = default_prompt
    else:
        # The same cleaning as a message: broken Unicode would break the upstream request just the same.
        system_prompt = clean_text(system_prompt).text.strip()
        if len(system_prompt) > limit:
            problems.append(
                f"**System prompt** is {len(system_prompt):,} characters long: the limit is {limit:,} "
                "(MAX_INPUT_CHARS); shorten it."
            )
            bad.append("System prompt")
            system_prompt = default_prompt

    return Choices(
        model=model,
        temperature=float(temperature),
        max_tokens=int(max_tokens),
        system_prompt=system_prompt,
        problems=tuple(problems),
        bad=tuple(bad),
    )


@dataclass(frozen=True)
class Request:
    """What goes to the router for one answer, besides the prompt (defined here: Chainlit loads ui.py by path,
    where a dataclass cannot be made)."""

    model: str
    route: str
    choices: Choices
    request_id: str
