"""The per-session chat settings a browser sends (any JSON): checked before use, bad ones named to the user."""

from __future__ import annotations

import asyncio
import math

import pytest
from chat_support import ChatProcess, Reply, connected

from foundry_chat.choices import check_choices, shown
from foundry_chat.settings import Settings
from tests.support.process import log_events

BAD_NEWS = "Something went wrong"


def make_settings(**env: object) -> Settings:
    # Explicit values for every setting the checks read, so that the environment running the tests does not matter.
    return Settings(**{"MAX_INPUT_CHARS": 500, "MAX_TOKENS": 32, "TEMPERATURE": 0.7, "SYSTEM_PROMPT": "Hi.", **env})


def status_texts(reply: Reply) -> list[str]:
    return [d["output"] for d in reply.named("new_message") if d.get("name") == "Status"]


@pytest.mark.unit
def test_missing_values_take_the_defaults() -> None:
    choices = check_choices({}, make_settings(), "Be nice.")
    assert (choices.model, choices.temperature, choices.max_tokens) == (None, 0.7, 32)
    assert choices.system_prompt == "Be nice."
    assert choices.problems == () and choices.rejection == ""


@pytest.mark.unit
def test_what_the_settings_panel_sends_is_used() -> None:
    chosen = {"model": "phi-4-mini", "temperature": 0, "max_tokens": 4096.0, "system_prompt": "  Be brief.\r\n"}
    choices = check_choices(chosen, make_settings(), "Be nice.")
    assert choices.problems == ()
    assert (choices.model, choices.temperature, choices.max_tokens, choices.system_prompt) == (
        "phi-4-mini",
        0.0,
        4096,
        "Be brief.",
    )
    assert isinstance(choices.max_tokens, int) and isinstance(choices.temperature, float)


@pytest.mark.unit
@pytest.mark.parametrize(
    ("key", "value", "label", "rule"),
    [
        ("temperature", 99, "Temperature", "a number from 0 to 2"),
        ("temperature", -0.1, "Temperature", "a number from 0 to 2"),
        ("temperature", "0.5", "Temperature", "a number from 0 to 2"),
        ("temperature", True, "Temperature", "a number from 0 to 2"),
        ("temperature", None, "Temperature", "a number from 0 to 2"),
        ("temperature", math.nan, "Temperature", "a number from 0 to 2"),
        ("max_tokens", "abc", "Max answer tokens", "a whole number from 16 to 4096"),
        ("max_tokens", 15, "Max answer tokens", "a whole number from 16 to 4096"),
        ("max_tokens", 4097, "Max answer tokens", "a whole number from 16 to 4096"),
        ("max_tokens", 100.5, "Max answer tokens", "a whole number from 16 to 4096"),
        ("max_tokens", math.inf, "Max answer tokens", "a whole number from 16 to 4096"),
        ("max_tokens", 10**400, "Max answer tokens", "a whole number from 16 to 4096"),
        ("max_tokens", [512], "Max answer tokens", "a whole number from 16 to 4096"),
        ("system_prompt", "x" * 501, "System prompt", "501 characters long: the limit is 500 (MAX_INPUT_CHARS)"),
        ("system_prompt", {"role": "system"}, "System prompt", "it must be text"),
        ("model", 3, "Model", "the name of a loaded model"),
        ("model", "m" * 257, "Model", "the name of a loaded model"),
        ("model", "tiny\ud800", "Model", "the name of a loaded model"),
        ("model", " ", "Model", "the name of a loaded model"),
    ],
)
def test_a_bad_value_is_named_with_its_range_and_what_to_do(key: str, value: object, label: str, rule: str) -> None:
    choices = check_choices({key: value}, make_settings(), "Be nice.")
    (problem,) = choices.problems
    assert problem.startswith(f"**{label}** is ") and rule in problem
    assert choices.bad == (label,)
    assert "not sent" in choices.rejection
    assert "chat settings" in choices.rejection and "send your message again" in choices.rejection
    # Usable values all the same (the panel is re-sent with them).
    assert 0 <= choices.temperature <= 2 and 16 <= choices.max_tokens <= 4096
    assert len(choices.system_prompt) <= 500


@pytest.mark.unit
def test_every_bad_setting_is_listed_at_once() -> None:
    chosen = {"model": ["a"], "temperature": "hot", "max_tokens": -1, "system_prompt": 7}
    choices = check_choices(chosen, make_settings(), "Be nice.")
    assert choices.bad == ("Model", "Temperature", "Max answer tokens", "System prompt")
    assert "Fix them in the chat settings" in choices.rejection


@pytest.mark.unit
def test_the_system_prompt_is_cleaned_like_a_message() -> None:
    choices = check_choices({"system_prompt": "Be\x00 kind\ud800.\ufffe"}, make_settings(), "Be nice.")
    assert choices.problems == () and choices.system_prompt == "Be kind."


@pytest.mark.unit
def test_a_cleared_system_prompt_means_none() -> None:
    assert check_choices({"system_prompt": None}, make_settings(), "Be nice.").system_prompt == ""
    assert check_choices({"system_prompt": ""}, make_settings(), "Be nice.").system_prompt == ""


@pytest.mark.unit
def test_the_limits_follow_the_configuration() -> None:
    big = make_settings(MAX_TOKENS=8000)
    assert check_choices({"max_tokens": 8000}, big, "").problems == ()
    assert "from 16 to 8000" in check_choices({"max_tokens": 8001}, big, "").rejection
    # A MAX_TOKENS below the slider's usual minimum stays usable: the panel starts with it.
    small = make_settings(MAX_TOKENS=8)
    assert check_choices({"max_tokens": 8}, small, "").problems == ()
    # The default system prompt is accepted back even when it is longer than MAX_INPUT_CHARS.
    long_default = "Be nice. " * 100
    assert check_choices({"system_prompt": long_default}, make_settings(), long_default).problems == ()


@pytest.mark.unit
def test_values_are_shown_short_and_safe() -> None:
    assert shown("x" * 100_000) == "a text of 100,000 characters"
    assert shown("a`b") == "the text `a'b`"
    assert shown(10**5000) == "a very large number"
    assert shown(False) == "`false`" and shown(None) == "empty (null)" and shown({}) == "an object"
    shown("bad\ud800\x00").encode("utf-8")  # a surrogate would raise


@pytest.mark.integration
def test_bad_settings_are_named_and_the_session_keeps_working(chat: ChatProcess) -> None:
    calls_before = chat.metric("gen_ai_client_operation_duration_seconds_count")
    rejected_before = chat.metric('chat_messages_total{outcome="rejected"}')
    huge_prompt = "y" * 100_000

    async def scenario():
        async with connected(chat.url) as client:
            replies = []
            for bad in ({"max_tokens": "abc"}, {"temperature": 99}, {"system_prompt": huge_prompt}):
                # Each time the earlier bad value is fixed and a new one sent, as a client may do.
                await client.change_settings({"max_tokens": 32, "temperature": 0.5, "system_prompt": "Hi.", **bad})
                replies.append(await client.ask("hello"))
            await client.change_settings({"max_tokens": 32, "temperature": 0.5, "system_prompt": "Hi."})
            replies.append(await client.ask("hello"))
            return replies

    *rejected, answered = asyncio.run(scenario())
    expected = [
        ("**Max answer tokens** is the text `abc`", "a whole number from 16 to 4096"),
        ("**Temperature** is `99`", "a number from 0 to 2"),
        ("**System prompt** is 100,000 characters long", "the limit is 500 (MAX_INPUT_CHARS)"),
    ]
    for reply, (named, rule) in zip(rejected, expected, strict=True):
        assert not reply.streamed_ids
        (status,) = status_texts(reply)
        assert named in status and rule in status
        assert "not sent" in status and "send your message again" in status
        assert not any(BAD_NEWS in text for text in reply.texts())
    assert answered.streamed_text and "Could not answer" not in answered.final_text()
    assert chat.metric("gen_ai_client_operation_duration_seconds_count") == calls_before + 1
    assert chat.metric('chat_messages_total{outcome="rejected"}') == rejected_before + 3
    logged = [e for e in log_events(chat.log_path) if e.get("reason") == "bad chat settings"]
    assert [e["settings"] for e in logged[-3:]] == [["Max answer tokens"], ["Temperature"], ["System prompt"]]
    assert huge_prompt[:1000] not in chat.log(), "a rejected value is not logged"


@pytest.mark.integration
def test_broken_unicode_is_removed_before_anything_goes_upstream(chat: ChatProcess) -> None:
    async def scenario():
        async with connected(chat.url) as client:
            await client.change_settings({"system_prompt": "Be\ud800 brief."})
            answered = await client.ask("he\ud800llo \ufffethere 👋")
            only_broken = await client.ask("\udfff\ud800 \uffff")
            return client.session_id, answered, only_broken

    session_id, answered, only_broken = asyncio.run(scenario())
    assert answered.streamed_text and "Could not answer" not in answered.final_text()
    system, *_, question = chat.prompts(session_id)[-1]
    assert system == {"role": "system", "content": "Be brief."}
    assert question == {"role": "user", "content": "hello there 👋"}
    removed = [e for e in log_events(chat.log_path) if e.get("event") == "message_characters_removed"]
    assert removed and removed[-1]["removed_invalid_characters"] == 2 and removed[-1]["session_id"] == session_id

    assert not only_broken.streamed_ids
    (status,) = status_texts(only_broken)
    assert "only invalid Unicode characters" in status
    assert len(chat.prompts(session_id)) == 1, "the message of broken characters only never went upstream"
