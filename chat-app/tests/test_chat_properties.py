"""Properties over any input: what a user types (any string, any object) and the chat settings a client sends
(any JSON). The unit properties check the pure checks against oracles written here independently (from Unicode
categories and code point arithmetic); the integration property sends the same kinds of input over Socket.IO to a
real chat service in front of the real gateway and the tiny model.
"""

from __future__ import annotations

import asyncio
import math
import unicodedata

import pytest
from chat_support import ChatProcess, Reply, connected
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from foundry_chat.choices import check_choices
from foundry_chat.inputs import check_input
from foundry_chat.settings import Settings

NO_MODEL = "(none loaded)"  # what the panel offers when no model is loaded (foundry_chat.views)
LOADED = "<the loaded model>"  # replaced by the gateway's model in the integration property
LABELS = {"model": "Model", "temperature": "Temperature", "max_tokens": "Max answer tokens"}
LABELS["system_prompt"] = "System prompt"

# Characters that matter here, mixed into any Unicode (surrogates included: hypothesis leaves them out by default).
SPECIAL = [
    *("\r", "\n", "\t", " ", "\x00", "\x07", "\x1b", "\x7f", "\x85", "\x9f"),
    *("\ud800", "\udbff", "\udc00", "\udfff", "\ufffe", "\uffff", "\ufdd0", "\U0001fffe", "\U0010ffff"),
    *("\u202e", "\u200f", "\u200d", "\ufeff", "\u0301", "😀", "中", "ש", "`", "*"),
]
CHARACTERS = st.characters(exclude_categories=()) | st.sampled_from(SPECIAL)
TEXTS = st.text(CHARACTERS, max_size=80)


def removed(c: str) -> bool:
    """What the checks must remove: controls (but tab and newline), surrogates, Unicode's 66 non-characters."""
    cp = ord(c)
    control = unicodedata.category(c) == "Cc" and c not in "\t\n"
    surrogate = 0xD800 <= cp <= 0xDFFF
    non_character = 0xFDD0 <= cp <= 0xFDEF or cp & 0xFFFE == 0xFFFE
    return control or surrogate or non_character


def normalised(raw: str) -> str:
    return raw.replace("\r\n", "\n").replace("\r", "\n")


def expected_text(raw: str) -> str:
    return "".join(c for c in normalised(raw) if not removed(c)).strip()


@pytest.mark.unit
@settings(max_examples=500)
@given(raw=TEXTS, max_chars=st.integers(1, 60))
def test_any_string_is_cleaned_or_rejected_with_a_reason(raw: str, max_chars: int) -> None:
    checked = check_input(raw, max_chars)
    expected = expected_text(raw)
    assert checked.removed_control_characters + checked.removed_invalid_characters == sum(map(removed, normalised(raw)))
    if expected and len(expected) <= max_chars:
        assert checked.rejection == ""
        assert checked.text == expected
        assert not any(map(removed, checked.text))
        checked.text.encode("utf-8")  # what the upstream request needs
    else:
        assert checked.text == ""
        assert checked.rejection.strip()
        if expected:
            assert f"{len(expected):,} characters long" in checked.rejection
        elif checked.removed_control_characters or checked.removed_invalid_characters:
            assert "which are removed" in checked.rejection
        else:
            assert "empty" in checked.rejection


@pytest.mark.unit
@given(
    raw=st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.binary()
    | st.lists(TEXTS, max_size=3)
    | st.dictionaries(TEXTS, st.integers(), max_size=3)
    | st.builds(object)
)
def test_anything_but_a_string_is_rejected(raw: object) -> None:
    checked = check_input(raw, 100)
    assert checked.rejection.strip() and checked.text == ""


# Any JSON a client can send (over Socket.IO, integers are limited to 100 digits; the pure check takes any).
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | TEXTS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)
# Values near the valid ranges, so that both sides of every bound are exercised, and any JSON besides.
PLAUSIBLE = {
    "model": st.sampled_from([LOADED, NO_MODEL]) | st.text(CHARACTERS, max_size=20),
    "temperature": st.floats(-0.5, 2.5) | st.integers(-1, 3),
    "max_tokens": st.integers(0, 5000) | st.floats(0, 5000) | st.sampled_from([15, 16, 32, 4096, 4097, 1024.0]),
    "system_prompt": TEXTS | st.integers(490, 510).map(lambda n: "s" * n),
}


def chat_settings(json: st.SearchStrategy) -> st.SearchStrategy[dict]:
    known = st.fixed_dictionaries({}, optional={key: value | json for key, value in PLAUSIBLE.items()})
    unknown = st.dictionaries(st.text(max_size=8), json, max_size=2)  # ignored, whatever they hold
    return st.tuples(unknown, known).map(lambda pair: {**pair[0], **pair[1]})


def whole(value: object) -> bool:
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value) and value == math.floor(value))


def number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def bad_settings(chosen: dict, temperature: float, max_tokens: int, limit: int) -> list[str]:
    """The labels of the settings that must be refused, in the panel's order (oracle for check_choices)."""
    bad = []
    model = chosen.get("model")
    if model is not None and not (
        isinstance(model, str) and model.strip() and len(model) <= 256 and not any(map(removed, model))
    ):
        bad.append("model")
    value = chosen.get("temperature", temperature)
    if not (number(value) and 0 <= value <= 2):
        bad.append("temperature")
    value = chosen.get("max_tokens", max_tokens)
    if not (number(value) and whole(value) and min(16, max_tokens) <= value <= max(4096, max_tokens)):
        bad.append("max_tokens")
    value = chosen.get("system_prompt")
    if value is not None and not (isinstance(value, str) and len(expected_text(value)) <= limit):
        bad.append("system_prompt")
    return [LABELS[key] for key in bad]


@pytest.mark.unit
@settings(max_examples=300)
@given(
    chosen=chat_settings(JSON),
    max_tokens=st.integers(1, 32768),
    max_input_chars=st.integers(1, 600),
    default_prompt=TEXTS,
)
def test_any_chat_settings_are_used_or_named_back(
    chosen: dict, max_tokens: int, max_input_chars: int, default_prompt: str
) -> None:
    config = Settings(MAX_TOKENS=max_tokens, MAX_INPUT_CHARS=max_input_chars, TEMPERATURE=0.7)
    limit = max(max_input_chars, len(default_prompt))
    choices = check_choices(chosen, config, default_prompt)

    expected_bad = bad_settings(chosen, 0.7, max_tokens, limit)
    assert list(choices.bad) == expected_bad
    assert len(choices.problems) == len(expected_bad)
    for label, problem in zip(expected_bad, choices.problems, strict=True):
        assert problem.startswith(f"**{label}** is ")
    if expected_bad:
        assert "not sent" in choices.rejection and "send your message again" in choices.rejection
        # Whatever was sent (a megabyte, broken Unicode), the message stays short and valid.
        assert len(choices.rejection) < 1200
        choices.rejection.encode("utf-8")
    else:
        assert choices.rejection == ""
        if "temperature" in chosen:
            assert choices.temperature == chosen["temperature"]
        if "max_tokens" in chosen:
            assert choices.max_tokens == chosen["max_tokens"]
        if isinstance(chosen.get("system_prompt"), str):
            assert choices.system_prompt == expected_text(chosen["system_prompt"])
    # Always usable values, whatever came in.
    assert isinstance(choices.temperature, float) and 0 <= choices.temperature <= 2
    assert isinstance(choices.max_tokens, int) and min(16, max_tokens) <= choices.max_tokens <= max(4096, max_tokens)
    assert isinstance(choices.system_prompt, str)
    assert choices.model is None or isinstance(choices.model, str)


# Over the wire: integers of at most 100 characters, sign included (python-engineio drops a packet with a longer
# one before Chainlit sees it, so the settings would silently stay as they were).
WIRE_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**99) + 1, 10**99 - 1) | st.floats() | TEXTS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)
MESSAGES = TEXTS | st.integers(495, 505).map(lambda n: "m" * n)
# The chat fixture's limits (chat-app/tests/conftest.py and start_chat): MAX_INPUT_CHARS=500, MAX_TOKENS=32.
MAX_INPUT_CHARS, MAX_TOKENS = 500, 32
FINE = {"temperature": 0.5, "max_tokens": 32, "system_prompt": "Be brief."}


def status_texts(reply: Reply) -> list[str]:
    return [d["output"] for d in reply.named("new_message") if d.get("name") == "Status"]


@pytest.fixture(scope="module")
def loaded_model(chat: ChatProcess) -> str:
    return chat.get("/readyz").json()["models"][0]


@pytest.mark.integration
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=MESSAGES, chosen=chat_settings(WIRE_JSON))
def test_any_message_and_settings_get_a_named_problem_or_an_answer(
    chat: ChatProcess, loaded_model: str, text: str, chosen: dict
) -> None:
    chosen = {key: loaded_model if value == LOADED else value for key, value in chosen.items()}

    async def scenario() -> tuple[Reply, Reply]:
        async with connected(chat.url) as client:  # a new session: settings never carry over between examples
            await client.change_settings(chosen)
            reply = await client.ask(text)
            # The same session keeps answering once its settings are fixed.
            await client.change_settings({**FINE, "model": loaded_model})
            return reply, await client.ask("hello")

    reply, after = asyncio.run(scenario())
    texts = reply.texts() + after.texts()
    assert not any("Something went wrong" in t for t in texts)
    assert not any(d.get("name") == "Error" for d in reply.named("new_message") + after.named("new_message"))
    assert after.streamed_text and "Could not answer" not in after.final_text()

    cleaned = expected_text(text)
    bad = bad_settings(chosen, 0.7, MAX_TOKENS, MAX_INPUT_CHARS)
    model = chosen.get("model")
    statuses = status_texts(reply)
    if not cleaned or len(cleaned) > MAX_INPUT_CHARS:
        event("message refused")
        (status,) = statuses
        assert not reply.streamed_ids
        if cleaned:
            assert f"{len(cleaned):,} characters long" in status and "MAX_INPUT_CHARS" in status
        else:
            assert "empty" in status or "which are removed" in status
    elif bad:
        event("settings refused")
        (status,) = statuses
        assert not reply.streamed_ids
        for label in LABELS.values():
            assert (f"**{label}**" in status) == (label in bad), (label, status)
    elif isinstance(model, str) and model not in {loaded_model, NO_MODEL}:
        event("model not loaded")
        assert not reply.streamed_ids
        assert any("no longer loaded" in s for s in statuses)
    else:
        # An answer: streamed, or the upstream's own refusal (the tiny model's context is 4096 tokens, so a large
        # answer length can exceed it); a modest answer length always streams.
        event("answered")
        assert reply.final_text()
        if chosen.get("max_tokens", MAX_TOKENS) <= 1024:
            assert reply.streamed_text and "Could not answer" not in reply.final_text()
