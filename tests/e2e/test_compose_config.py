"""`docker compose config` of every profile, online and offline, and the hardening every service must carry."""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest

from tests.e2e.stack import OFFLINE_SERVICES
from tests.support.process import REPO

pytestmark = pytest.mark.e2e

PROFILES = ["", "embedded", "grafana", "embedded,grafana"]
ALL_SERVICES = {
    "foundry-local",
    "chat-app",
    "open-webui",
    "webgpu-static",
    "prometheus",
    "blackbox-exporter",
    "grafana",
}
# Services whose image writes into its own files at start (documented in compose.yaml).
WRITABLE_ROOT = {"open-webui", "grafana"}


def rendered(profiles: str, offline: bool) -> dict:
    files = ["compose.yaml", "compose.offline.yaml"] if offline else ["compose.yaml"]
    args = [arg for name in files for arg in ("--file", str(REPO / name))]
    # The committed .env applies, as for a user; the profiles are the test's.
    result = compose_raw(*args, "config", "--format", "json", profiles=profiles)
    return json.loads(result)


def compose_raw(*args: str, profiles: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPOSE_") and k != "TINY_MODEL_DIR"}
    env["COMPOSE_PROFILES"] = profiles
    result = subprocess.run(["docker", "compose", *args], capture_output=True, text=True, timeout=60, cwd=REPO, env=env)
    assert result.returncode == 0, result.stderr
    assert "WARN" not in result.stderr, result.stderr
    return result.stdout


@pytest.mark.parametrize("offline", [False, True], ids=["online", "offline"])
@pytest.mark.parametrize("profiles", PROFILES, ids=lambda p: p or "no-profile")
def test_config_is_valid_for_every_profile(profiles: str, offline: bool) -> None:
    services = set(rendered(profiles, offline)["services"])
    expected = {"chat-app", "open-webui", "webgpu-static", "prometheus", "blackbox-exporter"}
    if "embedded" in profiles:
        expected.add("foundry-local")
    if "grafana" in profiles and not offline:
        expected.add("grafana")
    assert services == expected


@pytest.mark.parametrize("offline", [False, True], ids=["online", "offline"])
def test_every_service_is_hardened(offline: bool) -> None:
    services = rendered("embedded,grafana", offline)["services"]
    assert set(services) == (OFFLINE_SERVICES if offline else ALL_SERVICES)
    for name, service in services.items():
        assert service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name
        assert service["restart"] == "unless-stopped", name
        assert int(service["mem_limit"]) > 0, name
        assert service["healthcheck"]["test"], name
        assert service.get("read_only", False) == (name not in WRITABLE_ROOT), name
        user = service.get("user", "")
        assert user and not user.startswith(("0:", "root")), f"{name} must run as a non-root user"
        for port in service.get("ports", []):
            assert port["host_ip"] == "127.0.0.1", f"{name} publishes on {port['host_ip']}"
        for dependency in service.get("depends_on", {}).values():
            assert dependency["condition"] == "service_healthy", name


def test_host_gateway_where_the_host_foundry_local_is_reached() -> None:
    services = rendered("embedded", offline=False)["services"]
    for name in ("chat-app", "open-webui"):
        assert "host.docker.internal=host-gateway" in services[name]["extra_hosts"] or services[name][
            "extra_hosts"
        ] == {"host.docker.internal": "host-gateway"}, name
    assert "host.docker.internal" in services["chat-app"]["environment"]["FOUNDRY_LOCAL_URLS"]
    assert "host.docker.internal" in services["open-webui"]["environment"]["OPENAI_API_BASE_URLS"]


def test_offline_overlay_serves_the_tiny_model_read_only() -> None:
    foundry = rendered("embedded", offline=True)["services"]["foundry-local"]
    assert foundry["environment"]["FOUNDRY_MODEL_PATH"] == "/models/tiny-chat"
    mount = next(v for v in foundry["volumes"] if v["target"] == "/models/tiny-chat")
    assert mount["type"] == "bind" and mount["read_only"] is True
    assert mount["source"] == str(REPO / ".cache" / "tiny-model")


def test_open_webui_settings() -> None:
    service = rendered("embedded", offline=False)["services"]["open-webui"]
    env = service["environment"]
    urls = env["OPENAI_API_BASE_URLS"].split(";")
    keys = env["OPENAI_API_KEYS"].split(";")
    assert len(urls) == len(keys) and all(keys), "one non-empty key per connection"
    assert env["ENABLE_OLLAMA_API"] == "False"
    assert env["WEBUI_AUTH"] == "True"
    assert env["ENABLE_SIGNUP"] == "false", "after the first account (the admin), sign-up is closed"
    assert env["DEFAULT_USER_ROLE"] == "pending"
    assert env["ENABLE_PERSISTENT_CONFIG"] == "False"
    assert env["BYPASS_EMBEDDING_AND_RETRIEVAL"] == "True"
    assert 0 < int(env["AIOHTTP_CLIENT_TIMEOUT_MODEL_LIST"]) <= 10
    assert env["WEBUI_SECRET_KEY"] == "", "no secret is committed"
    assert env["WEBUI_SECRET_KEY_FILE"].startswith("/app/backend/data/"), "a generated key lives in the volume"


def test_chat_login_is_off_and_no_secret_is_committed() -> None:
    env = rendered("embedded", offline=False)["services"]["chat-app"]["environment"]
    assert env["CHAT_PASSWORD"] == "" and env["CHAINLIT_AUTH_SECRET"] == ""
    assert env["CHAT_USERNAME"] == "admin"
    assert env["LOG_PROMPTS"] == "false", "prompts are private unless asked for"


def test_committed_env_turns_the_embedded_service_on() -> None:
    lines = (REPO / ".env").read_text().splitlines()
    values = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    assert "embedded" in values["COMPOSE_PROFILES"].split(",")
    assert values["BIND_ADDRESS"] == "127.0.0.1"
    assert not any("SECRET" in name or "PASSWORD" in name for name in values)


def test_compose_spec_without_version_key() -> None:
    for name in ("compose.yaml", "compose.offline.yaml"):
        assert not re.search(r"^version:", (REPO / name).read_text(), re.MULTILINE), name
