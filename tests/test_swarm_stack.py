"""swarm/stack.yaml read as a file: the rules the Swarm stack keeps, checked without deploying it (tests/swarm
deploys it). Each rule is one a later edit could quietly break: hardening, where ports and state are, the same
images as compose.yaml, the edge naming every service it fronts."""

from __future__ import annotations

import re

import pytest
import yaml

from tests.support.process import REPO

pytestmark = pytest.mark.unit

STACK = yaml.safe_load((REPO / "swarm" / "stack.yaml").read_text())
OFFLINE = yaml.safe_load((REPO / "swarm" / "stack.offline.yaml").read_text())
COMPOSE = yaml.safe_load((REPO / "compose.yaml").read_text())
SERVICES = STACK["services"]
REPLICATED = ("router", "chat-app")


def dockerfile_of(service: dict) -> str:
    """The Dockerfile of an image this stack builds itself (the edge's), else nothing."""
    build = service.get("build")
    return (REPO / "swarm" / build["context"] / "Dockerfile").read_text() if build else ""


def test_every_service_is_hardened_and_checked() -> None:
    for name, service in SERVICES.items():
        assert service["cap_drop"] == ["ALL"], name
        assert service.get("init") is True, name
        user = str(service.get("user", ""))
        assert user and not user.startswith(("0:", "root")), f"{name} runs as a non-root user, not {user!r}"
        checked = "healthcheck" in service or "HEALTHCHECK" in dockerfile_of(service)
        assert checked, f"{name} has a health check: Swarm counts a task only once it passes"
        assert "tmpfs" not in service, f"{name}: stack deploy ignores `tmpfs:`; use a `type: tmpfs` volume"


def test_every_service_is_found_by_dns_and_only_the_edge_publishes_in_host_mode() -> None:
    for name, service in SERVICES.items():
        assert service["deploy"]["endpoint_mode"] == "dnsrr", f"{name}: virtual IPs need IPVS (docs/swarm.md)"
        if name != "edge":
            assert "ports" not in service, f"only the edge publishes, not {name}"
    assert {port["mode"] for port in SERVICES["edge"]["ports"]} == {"host"}


def test_the_router_and_the_chat_are_replicated_and_rolled_start_first() -> None:
    for name in REPLICATED:
        deploy = SERVICES[name]["deploy"]
        default = int(re.fullmatch(r"\$\{\w+:-(\d+)\}", str(deploy["replicas"])).group(1))
        assert default >= 2, name
        assert deploy["update_config"]["order"] == "start-first", name
    assert SERVICES["foundry-local"]["deploy"]["mode"] == "global"
    assert "node.labels.foundry.model == true" in SERVICES["foundry-local"]["deploy"]["placement"]["constraints"]


def test_state_stays_on_the_data_node_with_one_task() -> None:
    for name, service in SERVICES.items():
        named_volumes = [v for v in service.get("volumes", []) if isinstance(v, str) and not v.startswith(("/", "."))]
        if named_volumes and name != "foundry-local":  # the model cache: one per model node, by design
            deploy = service["deploy"]
            assert deploy["replicas"] == 1, name
            assert "node.labels.foundry.data == true" in deploy["placement"]["constraints"], name
            assert deploy["update_config"]["order"] == "stop-first", f"{name}: one writer per volume"


def interpolated(text: str, **env: str) -> str:
    """`${VAR:-default}` and `${VAR}` as `docker stack deploy` reads them (it takes no default within a default)."""
    return re.sub(r"\$\{(\w+)(?::-([^}]*))?\}", lambda m: env.get(m[1]) or m[2] or "", text)


def test_the_same_images_as_compose() -> None:
    for name, service in SERVICES.items():
        if name in COMPOSE["services"]:
            assert interpolated(service["image"]) == interpolated(COMPOSE["services"][name]["image"]), name


def test_every_image_of_the_project_takes_the_registry_prefix() -> None:
    """STACK_IMAGE_PREFIX names a registry every node pulls from (docs/swarm.md), for every image this project
    builds; Open WebUI's has its own variable, OPEN_WEBUI_IMAGE."""
    prefix = "registry.test:5000/team"
    for name, service in [*SERVICES.items(), *OFFLINE["services"].items()]:
        if "image" not in service or name == "open-webui":
            continue
        image = service["image"]
        if interpolated(image).startswith("foundry-stack/"):
            assert interpolated(image, STACK_IMAGE_PREFIX=prefix).startswith(f"{prefix}/"), name
    webui = interpolated(SERVICES["open-webui"]["image"], OPEN_WEBUI_IMAGE=f"{prefix}/open-webui:0.12.4")
    assert webui == f"{prefix}/open-webui:0.12.4"


def test_secrets_come_from_files_never_from_the_environment() -> None:
    for name, service in SERVICES.items():
        environment = " ".join(map(str, service.get("environment", [])))
        for secret in ("PASSWORD=", "API_KEY=", "API_KEYS=", "DATABASE_URL=", "AUTH_SECRET="):
            assert secret not in environment, f"{name} sets {secret} in its environment"
    for secret in STACK["secrets"].values():
        assert secret["file"].startswith("${SWARM_SECRETS_DIR:-./secrets}/")


def test_the_edge_fronts_every_published_service_by_its_tasks_name() -> None:
    config = (REPO / "edge" / "haproxy.cfg").read_text()
    fronted = set(re.findall(r"tasks\.([\w-]+):", config))
    assert fronted == {"chat-app", "router", "open-webui", "webgpu-static", "prometheus", "grafana"}
    assert fronted <= set(SERVICES)
    binds = {int(port) for port in re.findall(r"^\s*bind :(\d+)", config, flags=re.MULTILINE)}
    assert {port["target"] for port in SERVICES["edge"]["ports"]} <= binds


def test_the_offline_overlay_only_swaps_images_and_the_model() -> None:
    assert set(OFFLINE["services"]) <= set(SERVICES)
    assert OFFLINE["services"]["grafana"]["deploy"]["replicas"] == 0, "no Grafana image offline"
