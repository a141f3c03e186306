"""The checks of a chat request that the router and the gateway share (foundry_common.chat_request), and the
runtime's refusals in words (no processes, no network)."""

from __future__ import annotations

import json

import pytest

from foundry_common.chat_request import (
    RequestError,
    check_chat_request,
    check_content_type,
    clean_runtime_message,
    context_exceeded,
    parse_body,
)

pytestmark = pytest.mark.unit


def test_a_valid_request_passes_the_check_unchanged() -> None:
    # What Open WebUI and the OpenAI SDK send, nulls and extra fields included.
    payload = {
        "model": "tiny-chat-generic-cpu:1",
        "messages": [
            {"role": "system", "content": ""},
            {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
            {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function"}]},
            {"role": "tool", "tool_call_id": "c1", "content": "42"},
        ],
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": 0.7,
        "top_p": 1,
        "max_tokens": None,
        "seed": 10**30,
        "stop": ["\n\n"],
        "metadata": {"chat_id": "x"},
    }
    before = json.dumps(payload)
    check_chat_request(payload, 4096)
    assert json.dumps(payload) == before


@pytest.mark.parametrize(
    ("payload", "param", "words"),
    [
        ({"messages": "hi"}, "messages", "must be a list of messages"),
        ({"messages": [{"role": "bot", "content": "x"}]}, "messages[0].role", "must be one of 'system'"),
        (
            {"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]},
            "messages[0].content[0].type",
            "text only",
        ),
        ({"messages": [], "max_tokens": 4097}, "max_tokens", "more than the model's context of 4096 tokens"),
        ({"messages": [], "max_tokens": True}, "max_tokens", "must be an integer number of tokens; got a boolean"),
        ({"messages": [], "temperature": "0.5"}, "temperature", "must be a number from 0 to 2"),
        ({"messages": [], "stream": "true"}, "stream", "must be true or false"),
        ({"messages": [], "n": 3}, "n", "one choice per request"),
    ],
)
def test_check_names_the_field_and_what_to_send(payload: dict, param: str, words: str) -> None:
    with pytest.raises(RequestError) as caught:
        check_chat_request(payload, 4096)
    assert caught.value.status == 400
    assert caught.value.param == param
    assert words in caught.value.message


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"[]", "must be a JSON object"),
        (b'{"a": "\\udc00"}', "lone UTF-16 surrogate \\udc00"),
        (b'{"a": "\xed\xa0\x80"}', "lone UTF-16 surrogate \\ud800"),  # a surrogate encoded as if UTF-8
        (b'{"a": -Infinity}', "Infinity is not a JSON value"),
        (b"\xff\xfe{", "not UTF-8"),
    ],
)
def test_parse_body_refusals(body: bytes, words: str) -> None:
    with pytest.raises(RequestError) as caught:
        parse_body(body)
    assert caught.value.status == 400
    assert words in caught.value.message


def test_content_type_must_be_json_when_given() -> None:
    for accepted in (None, "", "application/json", "Application/JSON; charset=utf-8", "application/vnd.x+json"):
        check_content_type(accepted)
    with pytest.raises(RequestError) as caught:
        check_content_type("application/x-www-form-urlencoded")
    assert caught.value.status == 415


def test_runtime_messages_lose_their_cpp_noise() -> None:
    raw = (
        "Invalid request: stop_strings.cc:56 std::vector<std::string> fl::{anonymous}::Normalize(const "
        "nlohmann::json&, size_t, bool, const char*) stop supports at most 4 strings"
    )
    assert clean_runtime_message(raw) == "Invalid request: stop supports at most 4 strings"
    assert clean_runtime_message("[json.exception.type_error.302] type must be array") == "type must be array"
    assert clean_runtime_message("plain words (with parentheses)") == "plain words (with parentheses)"


def test_context_refusal_says_how_much_fits() -> None:
    raw = (
        "request requires 4612 total tokens (4100 input + 512 output), which exceeds the model's maximum "
        "context length of 4096 tokens"
    )
    assert "the prompt alone is longer" in context_exceeded(raw, max_tokens_defaulted=True).message
    fits = context_exceeded(raw.replace("4100 input", "3900 input"), max_tokens_defaulted=False)
    assert fits.code == "context_length_exceeded"
    assert fits.message.endswith("shorten the conversation or lower max_tokens to at most 196.")
    # The counts as fields, for programs (the router's max_tokens retry reads them, not the sentence).
    assert fits.fields == {"prompt_tokens": 3900, "max_tokens": 512, "context_tokens": 4096, "room": 196}
    assert json.loads(fits.body)["error"]["room"] == 196
    assert context_exceeded("something else", max_tokens_defaulted=False) is None
