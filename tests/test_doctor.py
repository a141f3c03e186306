"""scripts/doctor against real states of this machine: a taken port, the embedded service up or down, the router
ready or not, with its upstreams, its warnings and its key."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
from pathlib import Path

import pytest

from tests.support.archive_server import model_archive, serve_archive
from tests.support.chat import start_chat
from tests.support.process import REPO, GatewayProcess, free_port, start_gateway
from tests.support.router import RouterProcess, start_router

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
    assert check["detail"].startswith("ready: ")
    assert gateway.healthz().json()["model"] in check["detail"]


def test_an_embedded_service_downloading_is_running_not_ready_and_shows_its_progress(
    tiny_model: Path, tmp_path: Path
) -> None:
    body = model_archive(tiny_model, "tiny-url")
    with serve_archive(body, hold_at=len(body) // 3) as server:
        service = start_gateway(tmp_path / "data", tmp_path / "g.log", FOUNDRY_MODEL_URL=server.url("tiny-url.tar.gz"))
        try:
            percent = service.wait_part_way()["download"]["percent"]
            _, checks = doctor(FOUNDRY_GATEWAY_PORT=service.url.rsplit(":", 1)[1])
        finally:
            service.stop()
    check = checks["embedded Foundry Local"]
    # Not a failure: it runs, and nothing waits for it (the router check says whether another upstream serves).
    assert check["mark"] == "warn", check
    assert check["detail"].startswith("running, not ready: downloading: "), check
    assert f"({percent:.0f}% of " in check["detail"] and " MB/s)" in check["detail"], check
    assert "/readyz" in check["fix"]


def test_an_embedded_service_whose_model_failed_is_a_failure_that_says_why(tmp_path: Path) -> None:
    with serve_archive(b"", status=404) as server:
        service = start_gateway(tmp_path / "data", tmp_path / "g.log", FOUNDRY_MODEL_URL=server.url("gone.tar.gz"))
        try:
            service.wait_for_state({"failed"})
            code, checks = doctor(FOUNDRY_GATEWAY_PORT=service.url.rsplit(":", 1)[1])
        finally:
            service.stop()
    check = checks["embedded Foundry Local"]
    assert code == 1 and check["mark"] == "FAIL", check
    assert "HTTP 404" in check["detail"] and "FOUNDRY_MODEL_URL" in check["detail"]
    assert "restart foundry-local" in check["fix"]


def test_a_stopped_embedded_service_router_and_stack_are_failures() -> None:
    code, checks = doctor(
        FOUNDRY_GATEWAY_PORT=str(free_port()), ROUTER_PORT=str(free_port()), COMPOSE_PROFILES="embedded"
    )
    assert code == 1
    assert checks["embedded Foundry Local"]["mark"] == "FAIL"
    assert "docker compose up" in checks["embedded Foundry Local"]["fix"]
    assert checks["router"]["mark"] == "FAIL"
    assert "no answer" in checks["router"]["detail"]
    assert "docker compose up -d --wait router" in checks["router"]["fix"]
    assert checks["containers"]["mark"] == "FAIL"


def test_the_embedded_service_turned_off_is_only_a_warning() -> None:
    _, checks = doctor(FOUNDRY_GATEWAY_PORT=str(free_port()), COMPOSE_PROFILES="grafana")
    check = checks["embedded Foundry Local"]
    assert check["mark"] == "warn"
    assert "COMPOSE_PROFILES" in check["detail"]


def test_an_absent_host_foundry_local_is_only_a_warning() -> None:
    _, checks = doctor(FOUNDRY_LOCAL_PORT=str(free_port()))
    assert checks["host Foundry Local"]["mark"] == "warn"


def test_the_host_foundry_local_is_found_through_its_openai_api(gateway: GatewayProcess) -> None:
    # The embedded service speaks the SDK web service's shape, as a Linux host's Foundry Local would.
    _, checks = doctor(FOUNDRY_LOCAL_PORT=gateway.url.rsplit(":", 1)[1])
    assert checks["host Foundry Local"]["mark"] == "ok"


def router_port(router: RouterProcess) -> str:
    return router.url.rsplit(":", 1)[1]


def test_the_router_is_reported_with_its_upstreams_models_and_warnings(gateway: GatewayProcess, tmp_path: Path) -> None:
    model = gateway.healthz().json()["model"]
    absent = f"127.0.0.1:{free_port()}"
    # Said to be published beyond loopback, without keys (it listens on 127.0.0.1 all the same).
    router = start_router(tmp_path, [f"{gateway.url}/v1", f"http://{absent}/v1"], ROUTER_PUBLISHED_ADDRESS="0.0.0.0")
    try:
        router.wait_ready(model=model)
        _, checks = doctor(ROUTER_PORT=router_port(router))
    finally:
        router.stop()
    assert checks["router"]["mark"] == "ok"
    assert model in checks["router"]["detail"] and "1 of 2 upstreams up" in checks["router"]["detail"]
    served = checks[f"upstream {gateway.url.removeprefix('http://')}"]
    assert served["mark"] == "ok" and model in served["detail"]
    # An upstream that is down is reported with the router's reason, as a warning: another one serves.
    assert checks[f"upstream {absent}"]["mark"] == "warn"
    assert "down" in checks[f"upstream {absent}"]["detail"]
    assert checks["router warning"]["mark"] == "warn"
    assert "without API keys" in checks["router warning"]["detail"]
    assert "ROUTER_API_KEY" in checks["router warning"]["fix"]
    assert checks["router /v1/models"]["mark"] == "ok" and model in checks["router /v1/models"]["detail"]


def test_a_router_without_a_model_is_a_failure_that_says_why(tmp_path: Path) -> None:
    absent = f"127.0.0.1:{free_port()}"
    router = start_router(tmp_path, [f"http://{absent}/v1"])
    try:
        router.wait_healthy()
        code, checks = doctor(ROUTER_PORT=router_port(router))
    finally:
        router.stop()
    assert code == 1
    assert checks["router"]["mark"] == "FAIL"
    assert "not ready" in checks["router"]["detail"]
    assert "foundry model run" in checks["router"]["fix"]
    assert checks[f"upstream {absent}"]["mark"] == "warn"
    assert "router warning" not in checks, "published on 127.0.0.1: nothing to warn about"


def test_a_router_that_refuses_the_clients_key_is_a_failure(gateway: GatewayProcess, tmp_path: Path) -> None:
    router = start_router(tmp_path, [f"{gateway.url}/v1"], ROUTER_API_KEYS="right-key,other-key")
    try:
        router.wait_ready()
        code, refused = doctor(ROUTER_PORT=router_port(router), ROUTER_API_KEY="wrong-key")
        _, accepted = doctor(ROUTER_PORT=router_port(router), ROUTER_API_KEY="other-key")
    finally:
        router.stop()
    assert code == 1
    assert refused["router /v1/models"]["mark"] == "FAIL"
    assert "ROUTER_API_KEYS" in refused["router /v1/models"]["fix"]
    assert accepted["router /v1/models"]["mark"] == "ok"
    assert "router warning" not in accepted


def test_the_chat_history_is_reported_and_when_off_the_reason_is_a_failure(
    gateway: GatewayProcess, tmp_path: Path
) -> None:
    chat = start_chat(tmp_path / "chat", [f"{gateway.url}/v1"])
    try:
        chat.wait_healthy()
        _, checks = doctor(CHAT_APP_PORT=chat.url.rsplit(":", 1)[1])
        assert checks["chat history"]["mark"] == "ok" and "chat.db" in checks["chat history"]["detail"]
    finally:
        chat.stop()
    with sqlite3.connect(tmp_path / "chat" / "data" / "chat.db") as db:
        db.execute("UPDATE schema_version SET version = version + 1")  # as if a newer release had written it
    chat = start_chat(tmp_path / "chat", [f"{gateway.url}/v1"])
    try:
        chat.wait_healthy()
        code, checks = doctor(CHAT_APP_PORT=chat.url.rsplit(":", 1)[1])
    finally:
        chat.stop()
    assert code == 1 and checks["chat history"]["mark"] == "FAIL"
    assert "newer than this release knows" in checks["chat history"]["detail"]
    assert "restart chat-app" in checks["chat history"]["fix"]
