"""Pure functions of the gateway (no processes, no network)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from foundry_embedded.gateway import RequestError, default_max_tokens, resolve_model, upstream_message
from foundry_embedded.runtime import ServedModel, Status
from foundry_embedded.settings import Settings
from foundry_embedded.sse import StreamWatcher

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
