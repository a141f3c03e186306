"""`docker compose config` of every profile, online and offline, and the hardening every service must carry."""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess

import pytest
import yaml

from foundry_chat.settings import Settings as ChatSettings
from foundry_embedded.settings import Settings as EmbeddedSettings
from foundry_router.settings import Settings as RouterSettings
from foundry_router.settings import default_upstream_urls
from tests.e2e.stack import OFFLINE_SERVICES, ONE_SHOT_SERVICES
from tests.support.process import REPO

pytestmark = pytest.mark.e2e

PROFILES = ["", "embedded", "grafana", "embedded,grafana", "edge"]
ALL_SERVICES = OFFLINE_SERVICES | {"grafana"}
# Run to completion before the others: no restart, no healthcheck; the others wait for them to have completed.
ONE_SHOT = ONE_SHOT_SERVICES
# Services whose image writes into its own files at start (documented in compose.yaml).
WRITABLE_ROOT = {"open-webui", "grafana"}
# Who reaches the host's Foundry Local: the router (its upstream) and the blackbox exporter (Prometheus' probe).
HOST_GATEWAY = {"router", "blackbox-exporter"}
ROUTER_URL = "http://router:4000/v1"
# The router's settings Compose fills in itself; every other variable it lists is passed through as set.
ROUTER_SET_BY_COMPOSE = {"ROUTER_API_KEYS", "ROUTER_PUBLISHED_ADDRESS"}
# What of this process's environment `docker compose` may see: what it needs to find the engine and its plugin.
# Nothing else, so that a variable exported in the shell running the tests cannot change what is rendered.
KEPT_ENVIRONMENT = {"PATH", "HOME", "USER", "LANG", "TMPDIR", "XDG_RUNTIME_DIR", "XDG_CONFIG_HOME"}


def rendered(profiles: str, offline: bool, **env: str) -> dict:
    """The configuration as Compose renders it with the committed .env, these profiles and these variables."""
    return json.loads(render(profiles, offline, tuple(sorted(env.items()))))


@functools.cache
def render(profiles: str, offline: bool, env: tuple[tuple[str, str], ...]) -> str:
    files = ["compose.yaml", "compose.offline.yaml"] if offline else ["compose.yaml"]
    args = [arg for name in files for arg in ("--file", str(REPO / name))]
    return compose_raw(*args, "config", "--format", "json", profiles=profiles, **dict(env))


def compose_raw(*args: str, profiles: str, **variables: str) -> str:
    env = {k: v for k, v in os.environ.items() if k in KEPT_ENVIRONMENT or k.startswith("DOCKER_")}
    env |= {"COMPOSE_PROFILES": profiles, **variables}
    result = subprocess.run(["docker", "compose", *args], capture_output=True, text=True, timeout=60, cwd=REPO, env=env)
    assert result.returncode == 0, result.stderr
    assert "WARN" not in result.stderr, result.stderr
    return result.stdout


@pytest.mark.parametrize("offline", [False, True], ids=["online", "offline"])
@pytest.mark.parametrize("profiles", PROFILES, ids=lambda p: p or "no-profile")
def test_config_is_valid_for_every_profile(profiles: str, offline: bool) -> None:
    services = set(rendered(profiles, offline)["services"])
    expected = {"secrets", "router", "chat-app", "open-webui", "webgpu-static", "prometheus", "blackbox-exporter"}
    if "embedded" in profiles:
        expected.add("foundry-local")
    if "edge" in profiles:
        expected.add("edge")
    if "grafana" in profiles and not offline:
        expected.add("grafana")
    assert services == expected


@pytest.mark.parametrize("offline", [False, True], ids=["online", "offline"])
def test_every_service_is_hardened(offline: bool) -> None:
    services = rendered("embedded,grafana,edge", offline)["services"]
    assert set(services) == (OFFLINE_SERVICES if offline else ALL_SERVICES) | ONE_SHOT | {"edge"}
    for name, service in services.items():
        assert service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name
        assert service["restart"] == ("no" if name in ONE_SHOT else "unless-stopped"), name
        assert int(service["mem_limit"]) > 0, name
        assert name in ONE_SHOT or name == "edge" or service["healthcheck"]["test"], name  # the edge: its image's
        assert service.get("read_only", False) == (name not in WRITABLE_ROOT), name
        user = service.get("user", "")
        assert user and not user.startswith(("0:", "root")), f"{name} must run as a non-root user"
        for port in service.get("ports", []):
            assert port["host_ip"] == "127.0.0.1", f"{name} publishes on {port['host_ip']}"
        for needed, dependency in service.get("depends_on", {}).items():
            if needed in ONE_SHOT:
                assert dependency["condition"] == "service_completed_successfully", name
            elif needed != "foundry-local":  # started, not ready: a model download holds nothing up
                assert dependency["condition"] == "service_healthy", name


def test_every_login_and_key_reads_the_stack_secrets() -> None:
    """What locks a network deployment (foundry_common/network_lock.py) reaches each service that needs it."""
    services = rendered("embedded,grafana,edge", offline=False)["services"]
    readers = {
        name
        for name, service in services.items()
        for volume in service.get("volumes", [])
        if volume.get("source") == "stack-secrets" and volume["target"] == "/run/secrets"
    }
    assert readers == {"secrets", "router", "chat-app", "open-webui", "prometheus", "grafana", "edge"}
    assert all(services[name]["depends_on"]["secrets"] for name in readers - ONE_SHOT)
    assert "--web.config.file=/run/secrets/prometheus-web.yml" in services["prometheus"]["command"]
    grafana = services["grafana"]["environment"]
    assert "GF_SECURITY_ADMIN_PASSWORD" not in grafana, "never admin/admin"
    assert grafana["GF_SECURITY_ADMIN_PASSWORD__FILE"] == "/run/secrets/GRAFANA_ADMIN_PASSWORD"
    locked = rendered("edge", offline=False, BIND_ADDRESS="127.0.0.1", EDGE_BIND_ADDRESS="0.0.0.0")["services"]
    assert locked["secrets"]["environment"]["EDGE_BIND_ADDRESS"] == "0.0.0.0"
    assert {p["host_ip"] for p in locked["edge"]["ports"]} == {"0.0.0.0"}
    assert {p["host_ip"] for p in locked["chat-app"]["ports"]} == {"127.0.0.1"}, "plain HTTP stays on loopback"


@pytest.mark.parametrize("offline", [False, True], ids=["online", "offline"])
def test_the_router_is_hardened_and_published_on_loopback(offline: bool) -> None:
    router = rendered("", offline)["services"]["router"]
    assert router["read_only"] is True
    assert router["cap_drop"] == ["ALL"] and not router.get("cap_add")
    assert router["user"] == "10001:10001"
    assert "no-new-privileges:true" in router["security_opt"]
    assert 0 < int(router["mem_limit"]) <= 512 * 2**20, "a proxy: a small memory limit"
    assert [t.split(":")[0] for t in router["tmpfs"]] == ["/tmp"], "nothing else written"  # noqa: S108
    assert [(p["host_ip"], p["published"], p["target"]) for p in router["ports"]] == [("127.0.0.1", "4000", 4000)]
    assert "foundry_common.healthcheck" in " ".join(router["healthcheck"]["test"])
    # The embedded service is started first when its profile is on (not waited for: a model download must hold
    # nothing up), and not needed when it is off; its key comes from the secrets service.
    assert router["depends_on"] == {
        "foundry-local": {"condition": "service_started", "required": False},
        "secrets": {"condition": "service_completed_successfully", "required": True},
    }
    base = "foundry-stack/python:3.11-slim" if offline else "python:3.11-slim"
    assert router["build"]["args"]["BASE_IMAGE"] == base
    assert router["build"]["dockerfile"] == "router/Dockerfile" and router["build"]["context"] == str(REPO)


def test_host_gateway_only_where_the_host_foundry_local_is_reached() -> None:
    services = rendered("embedded", offline=False)["services"]
    with_host = {name for name, service in services.items() if service.get("extra_hosts")}
    assert with_host == HOST_GATEWAY, "the chat service and Open WebUI reach models through the router only"
    # Compose renders the entry as a list or a mapping, by version.
    entry = (["host.docker.internal=host-gateway"], {"host.docker.internal": "host-gateway"})
    for name in HOST_GATEWAY:
        assert services[name]["extra_hosts"] in entry, name
    # The router's default upstreams (its settings, not restated in Compose): the host's Foundry Local first, on
    # FOUNDRY_LOCAL_PORT (the committed .env), then the embedded service.
    router_env = services["router"]["environment"]
    assert router_env["FOUNDRY_LOCAL_URLS"] is None
    assert router_env["FOUNDRY_LOCAL_PORT"] == "51211"
    assert default_upstream_urls()[0].startswith("http://host.docker.internal:")


def test_the_chat_service_talks_to_the_router_only() -> None:
    chat = rendered("embedded", offline=False)["services"]["chat-app"]
    env = chat["environment"]
    assert not {name for name in env if name.startswith(("FOUNDRY_LOCAL", "CLOUD_", "OPEN_WEBUI"))}, env
    assert not {"BASE_URL", "API_KEY", "UPSTREAM_MAX_CONCURRENCY"} & set(env), env
    # Its one upstream is the router service, by the default of its settings.
    assert "ROUTER_URL" not in env
    assert ChatSettings.model_fields["router_url"].default == ROUTER_URL
    assert chat["depends_on"] == {
        "router": {"condition": "service_healthy", "required": True},
        "secrets": {"condition": "service_completed_successfully", "required": True},
    }


def test_open_webui_has_one_connection_the_router() -> None:
    webui = rendered("embedded", offline=False)["services"]["open-webui"]
    env = webui["environment"]
    assert env["OPENAI_API_BASE_URLS"] == ROUTER_URL
    assert env["OPENAI_API_KEYS"] == "not-needed", "an empty key would hide the connection's models"
    assert webui["depends_on"] == {
        "router": {"condition": "service_healthy", "required": True},
        "secrets": {"condition": "service_completed_successfully", "required": True},
    }
    for name in ("compose.yaml", "compose.offline.yaml", ".env", "open-webui/settings.env"):
        assert "OPEN_WEBUI_OPENAI_" not in (REPO / name).read_text(), f"{name}: one connection, no list to set"


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


def test_pass_through_variables_restate_no_default() -> None:
    """Each default lives once, in the service's settings class: Compose passes unset variables as unset."""
    services = rendered("embedded", offline=False)["services"]
    chat, router = services["chat-app"]["environment"], services["router"]["environment"]
    assert chat and all(value is None for value in chat.values()), chat
    embedded = services["foundry-local"]["environment"]
    assert embedded and all(value is None for value in embedded.values()), embedded
    passed = {name: value for name, value in router.items() if name not in ROUTER_SET_BY_COMPOSE}
    assert {name: value for name, value in passed.items() if value is not None} == {"FOUNDRY_LOCAL_PORT": "51211"}
    # Prompts stay out of the logs unless asked for: the default is the settings', in both services.
    assert chat["LOG_PROMPTS"] is None and router["LOG_PROMPTS"] is None
    assert ChatSettings.model_fields["log_prompts"].default is False
    assert RouterSettings.model_fields["log_prompts"].default is False
    # Set in the shell (or .env), a variable reaches the services that read it.
    given = rendered("embedded", offline=False, LOG_PROMPTS="true", MODEL="m", UPSTREAM_QUEUE_SIZE="3")["services"]
    assert given["chat-app"]["environment"]["LOG_PROMPTS"] == "true"
    assert given["router"]["environment"]["LOG_PROMPTS"] == "true"
    assert given["chat-app"]["environment"]["MODEL"] == "m"
    assert given["router"]["environment"]["UPSTREAM_QUEUE_SIZE"] == "3"


# Settings a service reads that Compose deliberately does not take from the shell or .env, and why. Every other setting
# of a settings class (what docs/*.md lists) reaches its container: test_every_documented_setting_reaches_its_service.
NOT_PASSED = {
    "router": {
        "ROUTER_HOST": "the container's own address (0.0.0.0); where it is published is BIND_ADDRESS",
        "ROUTER_PORT": "the container's own port (4000); in Compose the same name is the published port",
    },
    "chat-app": {
        "CHAT_HOST": "the container's own address (0.0.0.0); where it is published is BIND_ADDRESS",
        "CHAT_PORT": "the container's own port (8080); the published one is CHAT_APP_PORT",
        "ROUTER_URL": "the stack's own wiring: the chat's one upstream is the router service",
        "CHAT_DATA_DIR": "the chat-data volume's mount point in the image",
    },
    "foundry-local": {
        "GATEWAY_HOST": "the container's own address (0.0.0.0); where it is published is BIND_ADDRESS",
        "PORT": "the container's own port (5273); the published one is FOUNDRY_GATEWAY_PORT",
        "FOUNDRY_DATA_DIR": "the foundry-data volume's mount point in the image",
    },
}
SETTINGS_OF = {"router": RouterSettings, "chat-app": ChatSettings, "foundry-local": EmbeddedSettings}


def variables_of(settings: type) -> set[str]:
    """The environment variables a settings class reads (each field's alias, else its upper-cased name)."""
    return {f.validation_alias if isinstance(f.validation_alias, str) else name.upper()
            for name, f in settings.model_fields.items()}  # fmt: skip


@pytest.mark.parametrize("service", sorted(SETTINGS_OF))
def test_every_documented_setting_reaches_its_service(service: str) -> None:
    passed = set(rendered("embedded", offline=False)["services"][service]["environment"])
    read = variables_of(SETTINGS_OF[service])
    assert not set(NOT_PASSED[service]) - read, "an exclusion names a variable the service no longer reads"
    missing = read - passed - set(NOT_PASSED[service])
    assert not missing, f"set in .env or the shell, these would not reach {service}: {sorted(missing)}"
    # And a value set in the shell arrives as it was given.
    sample = sorted(read - set(NOT_PASSED[service]) - {"ROUTER_API_KEYS", "ROUTER_PUBLISHED_ADDRESS"})[0]
    given = rendered("embedded", offline=False, **{sample: "from-the-shell"})["services"][service]["environment"]
    assert given[sample] == "from-the-shell", sample


# The same rule for the Swarm stack (swarm/stack.yaml, as `docker stack deploy` reads it): every setting reaches its
# service, from the shell or as a Docker secret (a file in /run/secrets named after the variable, which the
# settings read), except these, and why. Its own dict: Swarm's reasons differ from Compose's.
NOT_PASSED_SWARM = {
    "router": {
        "ROUTER_HOST": "the container's own address (0.0.0.0)",
        "ROUTER_PORT": "the container's own port (4000); in the stack the same name is the edge's published port",
        "ROUTER_PUBLISHED_ADDRESS": "Swarm publishes on every address of the edge nodes: always 0.0.0.0",
        "FOUNDRY_LOCAL_URLS": "every model task (tasks.foundry-local); SWARM_FOUNDRY_LOCAL_URLS replaces the list, "
        "so that a shell set up for Compose (host.docker.internal) does not change the stack",
    },
    "chat-app": {
        "CHAT_HOST": "the container's own address (0.0.0.0)",
        "CHAT_PORT": "the container's own port (8080); the edge publishes it on CHAT_APP_PORT",
        "ROUTER_URL": "the stack's own wiring: the chat's one upstream is the router service",
        "CHAT_DATA_DIR": "no data folder in Swarm (a read-only root): the history is in PostgreSQL (DATABASE_URL) "
        "and the login key a secret",
    },
    "foundry-local": {
        "GATEWAY_HOST": "the container's own address (0.0.0.0)",
        "PORT": "the container's own port (5273), where the routers find every task",
        "FOUNDRY_DATA_DIR": "the foundry-data volume's mount point in the image",
    },
}
STACK_FILE = REPO / "swarm" / "stack.yaml"


def stack_rendered(**variables: str) -> dict:
    """swarm/stack.yaml as `docker stack deploy` reads it (`docker stack config`: no swarm needed), with only these
    variables of the shell."""
    env = {k: v for k, v in os.environ.items() if k in KEPT_ENVIRONMENT or k.startswith("DOCKER_")} | variables
    command = ["docker", "stack", "config", "--compose-file", str(STACK_FILE)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=REPO, env=env)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


@pytest.mark.parametrize("service", sorted(SETTINGS_OF))
def test_every_documented_setting_reaches_its_swarm_service(service: str) -> None:
    read = variables_of(SETTINGS_OF[service])
    excluded = set(NOT_PASSED_SWARM[service])
    assert not excluded - read, "an exclusion names a variable the service no longer reads"
    secrets = {secret["target"] for secret in stack_rendered()["services"][service].get("secrets", [])}
    assert not secrets - read, f"a secret of {service} is no setting it reads: {sorted(secrets - read)}"
    # Every other setting, set in the shell at once, arrives as it was given.
    given = {name: f"from-the-shell-{name.lower()}" for name in sorted(read - excluded - secrets)}
    environment = stack_rendered(**given)["services"][service].get("environment", {})
    missing = sorted(name for name, value in given.items() if environment.get(name) != value)
    assert not missing, f"set in the shell, these would not reach the Swarm service {service}: {missing}"


def test_router_keys_take_the_clients_key() -> None:
    def keys(**env: str) -> tuple[str, str, str]:
        services = rendered("", offline=False, **env)["services"]
        return (
            services["router"]["environment"]["ROUTER_API_KEYS"],
            services["chat-app"]["environment"]["ROUTER_API_KEY"],
            services["open-webui"]["environment"]["OPENAI_API_KEYS"],
        )

    assert keys() == ("", None, "not-needed"), "no key by default: the router's /v1 is open on loopback"
    assert keys(ROUTER_API_KEY="k1") == ("k1", "k1", "k1"), "the key both clients send is the router's key"
    assert keys(ROUTER_API_KEY="k2", ROUTER_API_KEYS="k1,k2") == ("k1,k2", "k2", "k2"), "or one of its keys"


def test_router_published_address_follows_bind_address() -> None:
    router = rendered("", offline=False)["services"]["router"]
    assert router["environment"]["ROUTER_PUBLISHED_ADDRESS"] == "127.0.0.1"
    exposed = rendered("", offline=False, BIND_ADDRESS="0.0.0.0", ROUTER_PORT="4100")["services"]["router"]
    assert exposed["environment"]["ROUTER_PUBLISHED_ADDRESS"] == "0.0.0.0", "so that it warns without keys"
    assert [(p["host_ip"], p["published"]) for p in exposed["ports"]] == [("0.0.0.0", "4100")]


def test_offline_overlay_serves_the_real_model_read_only_in_both_runtimes() -> None:
    services = rendered("embedded", offline=True)["services"]
    folder = "/models/smollm2-135m-instruct"  # its name gives the id: smollm2-135m-instruct-generic-cpu:1
    assert services["foundry-local"]["environment"]["FOUNDRY_MODEL_PATH"] == folder
    for service in ("foundry-local", "webgpu-static"):  # the runtime, and the chat in the page
        mount = next(v for v in services[service]["volumes"] if v["target"] == folder)
        assert mount["type"] == "bind" and mount["read_only"] is True
        assert mount["source"] == str(REPO / ".cache" / "models" / "smollm2-135m-instruct")


def test_chat_login_is_off_and_no_secret_is_committed() -> None:
    env = rendered("embedded", offline=False)["services"]["chat-app"]["environment"]
    # Unset in Compose: the settings' defaults apply (login off, no secret, the user name `admin`).
    assert env["CHAT_PASSWORD"] is None and env["CHAINLIT_AUTH_SECRET"] is None and env["CHAT_USERNAME"] is None
    fields = ChatSettings.model_fields
    assert fields["chat_password"].default is None and fields["chainlit_auth_secret"].default is None
    assert fields["chat_username"].default == "admin"


def test_committed_env_turns_the_embedded_service_on() -> None:
    lines = (REPO / ".env").read_text().splitlines()
    values = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    assert "embedded" in values["COMPOSE_PROFILES"].split(",")
    assert values["BIND_ADDRESS"] == "127.0.0.1"
    assert values["ROUTER_PORT"] == "4000"
    assert not any("SECRET" in name or "PASSWORD" in name or "KEY" in name for name in values)


def test_compose_spec_without_version_key() -> None:
    for name in ("compose.yaml", "compose.offline.yaml"):
        assert not re.search(r"^version:", (REPO / name).read_text(), re.MULTILINE), name
