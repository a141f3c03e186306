"""Pure functions of the gateway (no processes, no network)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from foundry_common.chat_request import (
    check_chat_request,
    check_content_type,
    clean_runtime_message,
    context_exceeded,
    parse_body,
)
from foundry_common.sse import StreamWatcher
from foundry_embedded.gateway import RequestError, default_max_tokens, drop_tools, resolve_model, upstream_message
from foundry_embedded.runtime import ServedModel, Status
from foundry_embedded.settings import Settings

pytestmark = pytest.mark.unit

TINY = ServedModel(id="tiny-chat-generic-cpu:1", alias="tiny-chat", api_base="/catalogs/local/v1", context_length=4096)
READY = Status("ready", "Serving.", model=TINY.id, models=(TINY,))


def sse(*events: dict) -> bytes:
    return b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events) + b"data: [DONE]\n\n"


def delta(text: str) -> dict:
    return {"choices": [{"index": 0, "delta": {"content": text}}]}


def test_stream_watcher_counts_chunks_split_anywhere() -> None:
    stream = sse(delta("a"), delta("b"), delta(""), delta("c"), {"choices": [], "usage": {"completion_tokens": 3}})
    for size in (1, 2, 7, 64, len(stream)):
        watcher = StreamWatcher(started=0.0)
        for i in range(0, len(stream), size):
            watcher.feed(stream[i : i + size])
        assert watcher.content_chunks == 3
        assert watcher.usage == {"completion_tokens": 3}
        assert watcher.first_token_at is not None


def test_stream_watcher_sees_the_end_of_the_stream_split_anywhere() -> None:
    stream = sse(delta("a"), {"choices": [], "usage": {"completion_tokens": 1}})
    for size in (1, 3, 64, len(stream)):
        watcher = StreamWatcher(started=0.0)
        for i in range(0, len(stream), size):
            watcher.feed(stream[i : i + size])
            # Not before the whole [DONE] line has passed.
            assert watcher.done == (b"data: [DONE]\n" in stream[: i + size])
    said = StreamWatcher(started=0.0)  # an answer that merely says it
    said.feed(sse(delta("data: [DONE]"))[: -len(b"data: [DONE]\n\n")])
    assert not said.done


def test_stream_watcher_falls_back_to_chunks_without_usage() -> None:
    watcher = StreamWatcher(started=0.0)
    watcher.feed(sse(delta("a"), delta("b")))
    assert watcher.output_tokens == 2


def test_stream_watcher_ignores_what_is_not_json() -> None:
    watcher = StreamWatcher(started=0.0)
    watcher.feed(b": comment\n\ndata: {broken\n\ndata: [1, 2]\n\n")
    assert watcher.content_chunks == 0


def test_default_max_tokens_fits_the_context() -> None:
    assert default_max_tokens(TINY, 512) == 512
    small = ServedModel("s:1", "s", "/v1", context_length=256)
    assert default_max_tokens(small, 512) == 128
    assert default_max_tokens(ServedModel("u:1", "u", "/v1", None), 300) == 300


def test_resolve_model_by_id_and_alias() -> None:
    assert resolve_model({"model": TINY.id}, READY) is TINY
    assert resolve_model({"model": "tiny-chat"}, READY) is TINY


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        ({"model": "gpt-9"}, READY, 404),
        ({}, READY, 400),
        ({"model": 3}, READY, 400),
        ({"model": TINY.id}, Status("downloading", "Downloading 40%."), 503),
    ],
)
def test_resolve_model_refusals(payload: dict, status: Status, code: int) -> None:
    with pytest.raises(RequestError) as caught:
        resolve_model(payload, status)
    assert caught.value.status == code
    assert caught.value.message


def test_upstream_message_reads_every_error_shape() -> None:
    assert upstream_message(b'{"error": {"message": "too long"}}') == "too long"
    assert upstream_message(b'{"error": "bad"}') == "bad"
    assert upstream_message(b"plain failure") == "plain failure"


def test_local_model_id_is_stable_and_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FOUNDRY_MODEL_PATH", "/models/Tiny Model_v2")
    assert Settings().local_model_id == "tiny-model-v2-generic-cpu:1"
    monkeypatch.setenv("FOUNDRY_MODEL_ID", "mine:3")
    assert Settings().local_model_id == "mine:3"


def test_empty_variables_from_compose_mean_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FOUNDRY_MODEL_PATH", "")
    monkeypatch.setenv("FOUNDRY_MODEL_ID", "")
    settings = Settings()
    assert settings.foundry_model_path is None
    assert settings.foundry_model_id is None
    assert Settings(FOUNDRY_MODEL_PATH=Path("/m")).foundry_model_path == Path("/m")


def test_a_valid_request_passes_the_check_unchanged() -> None:
    # What Open WebUI and the OpenAI SDK send, nulls and extra fields included.
    payload = {
        "model": TINY.id,
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
    assert context_exceeded("something else", max_tokens_defaulted=False) is None


TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}
NO_TOOLS_MODEL = ServedModel("m-generic-cpu:1", "m", "/catalogs/local/v1", 8192, tool_calls=False)
TOOLS_MODEL = ServedModel("t-generic-cpu:1", "t", "/catalogs/local/v1", 8192, tool_calls=True)


@pytest.mark.parametrize("choice", [None, "auto"])
def test_tools_are_dropped_for_a_model_that_cannot_call_them(choice: str | None) -> None:
    payload = {"messages": [], "tools": [TOOL, TOOL], "parallel_tool_calls": True}
    if choice is not None:
        payload["tool_choice"] = choice
    reason = drop_tools(payload, NO_TOOLS_MODEL)
    assert reason is not None and "2 tool(s)" in reason and "genai_config.json" in reason
    assert payload == {"messages": []}


@pytest.mark.parametrize("choice", ["required", {"type": "function", "function": {"name": "f"}}])
def test_a_required_tool_call_on_such_a_model_is_a_400(choice: object) -> None:
    with pytest.raises(RequestError) as raised:
        drop_tools({"tools": [TOOL], "tool_choice": choice}, NO_TOOLS_MODEL)
    error = raised.value
    assert (error.status, error.code, error.param) == (400, "tool_calls_unsupported", "tool_choice")


@pytest.mark.parametrize(
    ("model", "payload"),
    [
        (NO_TOOLS_MODEL, {"tools": [TOOL], "tool_choice": "none"}),  # the runtime takes it as it is
        (NO_TOOLS_MODEL, {"tools": []}),
        (NO_TOOLS_MODEL, {"messages": []}),
        (TINY, {"tools": [TOOL]}),  # not probed (None): as it is
        (TOOLS_MODEL, {"tools": [TOOL], "tool_choice": "required"}),
    ],
)
def test_other_requests_keep_their_tools(model: ServedModel, payload: dict) -> None:
    before = json.loads(json.dumps(payload))
    assert drop_tools(payload, model) is None
    assert payload == before
