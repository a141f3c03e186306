"""Pure functions of the gateway (no processes, no network)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from foundry_embedded.archive import shown
from foundry_embedded.gateway import RequestError, default_max_tokens, drop_tools, resolve_model
from foundry_embedded.runtime import ServedModel, Status
from foundry_embedded.settings import Settings

pytestmark = pytest.mark.unit

TINY = ServedModel(id="tiny-chat-generic-cpu:1", alias="tiny-chat", api_base="/catalogs/local/v1", context_length=4096)
READY = Status("ready", "Serving.", model=TINY.id, models=(TINY,))


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


def test_local_model_id_is_stable_and_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FOUNDRY_MODEL_PATH", "/models/Tiny Model_v2")
    assert Settings().local_model_id == "tiny-model-v2-generic-cpu:1"
    monkeypatch.setenv("FOUNDRY_MODEL_ID", "mine:3")
    assert Settings().local_model_id == "mine:3"


def test_a_model_url_gives_the_id_from_its_file_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FOUNDRY_MODEL_URL", "https://user:secret@models.internal/share/Tiny%20Model_v2.tar.gz?x=1")
    settings = Settings()
    assert settings.archive_name == "Tiny Model_v2"
    assert settings.model_id_for(settings.archive_name) == "tiny-model-v2-generic-cpu:1"
    assert shown(settings.foundry_model_url) == "https://models.internal/share/Tiny%20Model_v2.tar.gz?x=1"
    monkeypatch.setenv("FOUNDRY_MODEL_URL", "http://models.internal/latest")
    assert Settings().archive_name == "latest"
    monkeypatch.setenv("FOUNDRY_MODEL_ID", "mine:3")
    assert Settings().model_id_for("latest") == "mine:3"


def test_empty_variables_from_compose_mean_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FOUNDRY_MODEL_PATH", "")
    monkeypatch.setenv("FOUNDRY_MODEL_ID", "")
    monkeypatch.setenv("FOUNDRY_MODEL_URL", "")
    settings = Settings()
    assert settings.foundry_model_url is None
    assert settings.foundry_model_path is None
    assert settings.foundry_model_id is None
    assert Settings(FOUNDRY_MODEL_PATH=Path("/m")).foundry_model_path == Path("/m")


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
