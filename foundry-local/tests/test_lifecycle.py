"""Start, stop, restart and misconfiguration of the embedded service (each test its own process)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.process import log_events, start_gateway

pytestmark = pytest.mark.integration


def test_sigterm_stops_cleanly_and_a_restart_reuses_the_registration(tiny_model: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = start_gateway(data, tmp_path / "first.log", FOUNDRY_MODEL_PATH=str(tiny_model))
    ready = first.wait_for_state({"ready"})
    started = time.monotonic()
    # 0, or death by the re-raised SIGTERM after a graceful shutdown (uvicorn's convention).
    assert first.stop(timeout=15) in {0, -15}, first.log()
    # Docker sends SIGKILL 10 s after SIGTERM: the service must be gone well before.
    assert time.monotonic() - started < 10, "SIGTERM took too long"
    assert any(e.get("event") == "runtime_stopped" for e in log_events(first.log_path)), first.log()

    # Same data folder: the model is already registered, and is found again under the same id.
    second = start_gateway(data, tmp_path / "second.log", FOUNDRY_MODEL_PATH=str(tiny_model))
    try:
        assert second.wait_for_state({"ready"})["model"] == ready["model"]
        assert not any(e.get("event") == "model_registered" for e in log_events(second.log_path))
    finally:
        second.stop()


def test_a_moved_model_folder_replaces_the_stale_registration(tiny_model: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = start_gateway(data, tmp_path / "a.log", FOUNDRY_MODEL_PATH=str(tiny_model))
    model = first.wait_for_state({"ready"})["model"]
    first.stop()
    moved = tmp_path / tiny_model.name
    subprocess.run(["cp", "-r", str(tiny_model), str(moved)], check=True)
    second = start_gateway(data, tmp_path / "b.log", FOUNDRY_MODEL_PATH=str(moved))
    try:
        assert second.wait_for_state({"ready"})["model"] == model
        assert any(e.get("event") == "model_registered" for e in log_events(second.log_path))
    finally:
        second.stop()


def test_offline_without_a_model_says_what_to_set(tmp_path: Path) -> None:
    service = start_gateway(tmp_path / "data", tmp_path / "g.log", FOUNDRY_MODEL="no-such-model-alias")
    try:
        body = service.wait_for_state({"no_model", "failed"}, timeout=120)
        assert body["state"] == "no_model"
        assert "FOUNDRY_MODEL_PATH" in body["message"]
        # Live (nothing should restart it: it says what to set), not ready.
        assert service.healthz().status_code == 200
        assert service.readyz().status_code == 503 and service.readyz().json()["state"] == "no_model"
        assert any(e.get("event") == "model_unavailable" for e in log_events(service.log_path))
    finally:
        assert service.stop() in {0, -15}
    # The native runtime's own complaints about the unreachable catalog are JSON events too.
    lines = [line for line in service.log().splitlines() if line.strip()]
    assert all(json.loads(line) for line in lines), service.log()
    assert any(e.get("event") == "runtime_log" for e in log_events(service.log_path))


def test_a_folder_that_is_not_a_model_is_reported(tmp_path: Path) -> None:
    empty = tmp_path / "not-a-model"
    empty.mkdir()
    service = start_gateway(tmp_path / "data", tmp_path / "g.log", FOUNDRY_MODEL_PATH=str(empty))
    try:
        body = service.wait_for_state({"no_model", "failed"})
        assert "genai_config.json" in body["message"]
    finally:
        service.stop()


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PORT", "eighty"),
        ("LOG_LEVEL", "chatty"),
        ("FOUNDRY_MODEL_ID", "no-version"),
        ("MAX_REQUEST_BYTES", "1"),
        ("FOUNDRY_MODEL_URL", "models.internal/tiny.tar.gz"),
    ],
)
def test_bad_configuration_exits_with_a_clear_message(tmp_path: Path, variable: str, value: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "foundry_embedded"],
        env={"PATH": "/usr/bin:/bin", variable: value, "FOUNDRY_DATA_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert f"{variable}={value!r}" in result.stderr
