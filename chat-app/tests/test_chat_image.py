"""The chat service's image, built from the local base and run by the real Docker engine.

The container's one upstream is the router (ROUTER_URL). Here the router is a local process listening on an
address the Docker bridge reaches, reached through host.docker.internal as a router on the host would be, in
front of the embedded gateway with the tiny model.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from chat_support import ask_once

from tests.support.docker import build_image, docker, health, inspect, published_port, require_docker, running_container
from tests.support.process import GatewayProcess, ready_gateway, wait_until
from tests.support.router import RouterProcess, start_router

pytestmark = pytest.mark.e2e

IMAGE = "foundry-stack/chat-app:test"
# 350 MB before the history; SQLAlchemy and asyncpg add about 10 MB (their compiled extensions and bytecode).
MAX_IMAGE_BYTES = 370 * 1000 * 1000


@pytest.fixture(scope="module")
def image() -> str:
    require_docker()
    return build_image("chat-app", IMAGE)


@pytest.fixture(scope="module")
def host_foundry(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    with ready_gateway(tmp_path_factory.mktemp("host-foundry"), FOUNDRY_MODEL_PATH=str(tiny_model)) as service:
        yield service


@pytest.fixture(scope="module")
def host_router(host_foundry: GatewayProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RouterProcess]:
    router = start_router(tmp_path_factory.mktemp("host-router"), [f"{host_foundry.url}/v1"], ROUTER_HOST="0.0.0.0")
    try:
        router.wait_ready()
        yield router
    finally:
        router.stop()


@pytest.fixture(scope="module")
def container(image: str, host_router: RouterProcess) -> Iterator[tuple[str, float]]:
    port = host_router.url.rsplit(":", 1)[1]
    with running_container(
        "--publish", "127.0.0.1::8080",
        "--add-host", "host.docker.internal:host-gateway",
        "--env", f"ROUTER_URL=http://host.docker.internal:{port}/v1",
        image,
    ) as container:  # fmt: skip
        yield container


def test_image_is_small_enough(image: str) -> None:
    size = int(docker("image", "inspect", "--format", "{{.Size}}", image).stdout.strip())
    assert size <= MAX_IMAGE_BYTES, f"image is {size / 1e6:.0f} MB"


def test_container_is_healthy_and_runs_as_a_non_root_user(container: tuple[str, float]) -> None:
    name, _ = container
    assert health(name) == "healthy", docker("logs", name).stdout[-3000:]
    assert docker("exec", name, "id", "-u").stdout.strip() != "0"
    assert inspect(name)["Config"]["User"] not in {"", "0", "root"}


def test_chats_through_the_router(container: tuple[str, float], host_foundry: GatewayProcess) -> None:
    name, _ = container
    url = f"http://127.0.0.1:{published_port(name, 8080)}"

    def ready() -> bool:
        return httpx.get(f"{url}/readyz", timeout=5).status_code == 200

    wait_until(ready, 20, "/readyz 200 in the container")
    body = httpx.get(f"{url}/readyz", timeout=5).json()
    assert body["router"].startswith("http://host.docker.internal:")
    upstream = host_foundry.url.removeprefix("http://")
    assert [(u["name"], u["state"]) for u in body["upstreams"]] == [(upstream, "up")]

    reply = ask_once(url, "hello from a container")
    assert reply.streamed_text
    assert f"on {upstream} (local)" in reply.final_text()


def test_logs_are_json_lines(container: tuple[str, float]) -> None:
    name, _ = container
    lines = [line for line in docker("logs", name).stdout.splitlines() if line.startswith("{")]
    assert any(json.loads(line).get("event") == "router_state" for line in lines)
    assert "Traceback" not in docker("logs", name).stdout


def test_docker_stop_is_clean(image: str) -> None:
    name = docker("run", "--detach", image).stdout.strip()
    try:
        wait_until(lambda: health(name) == "healthy", 60, "the container to be healthy")
        docker("stop", "--time", "10", name)
        assert inspect(name)["State"]["ExitCode"] == 0, "SIGTERM must stop the service before Docker's SIGKILL"
    finally:
        docker("rm", "--force", name, check=False)
