"""scripts/doctor against real states of this machine: a taken port, the embedded service up or down."""

from __future__ import annotations

import json
import os
import socket
import subprocess

import pytest

from tests.support.process import REPO, GatewayProcess, free_port

pytestmark = pytest.mark.integration


def doctor(**env: str) -> tuple[int, dict[str, dict]]:
    # A project name with no containers: these tests see the stack as not running.
    full_env = {**os.environ, "COMPOSE_PROJECT_NAME": "doctor-test-none", **env}
    result = subprocess.run(
        [str(REPO / "scripts" / "doctor"), "--json"], capture_output=True, text=True, timeout=120, env=full_env
    )
    return result.returncode, {c["name"]: c for c in json.loads(result.stdout)}


def test_a_port_taken_by_another_program_is_a_failure_with_a_fix() -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        code, checks = doctor(CHAT_APP_PORT=str(port))
    check = checks[f"port {port}"]
    assert code == 1
    assert check["mark"] == "FAIL"
    assert "taken by another program" in check["detail"]
    assert "CHAT_APP_PORT" in check["fix"]


def test_the_embedded_service_is_reported_with_its_model(gateway: GatewayProcess) -> None:
    port = gateway.url.rsplit(":", 1)[1]
    _, checks = doctor(FOUNDRY_GATEWAY_PORT=port)
    check = checks["embedded Foundry Local"]
    assert check["mark"] == "ok"
    assert gateway.healthz().json()["model"] in check["detail"]


def test_a_stopped_embedded_service_and_stack_are_failures() -> None:
    code, checks = doctor(FOUNDRY_GATEWAY_PORT=str(free_port()))
    assert code == 1
    assert checks["embedded Foundry Local"]["mark"] == "FAIL"
    assert "docker compose up" in checks["embedded Foundry Local"]["fix"]
    assert checks["containers"]["mark"] == "FAIL"


def test_an_absent_host_foundry_local_is_only_a_warning() -> None:
    _, checks = doctor(FOUNDRY_LOCAL_PORT=str(free_port()))
    assert checks["host Foundry Local"]["mark"] == "warn"


def test_the_host_foundry_local_is_found_through_its_openai_api(gateway: GatewayProcess) -> None:
    # The embedded service speaks the SDK web service's shape, as a Linux host's Foundry Local would.
    _, checks = doctor(FOUNDRY_LOCAL_PORT=gateway.url.rsplit(":", 1)[1])
    assert checks["host Foundry Local"]["mark"] == "ok"
