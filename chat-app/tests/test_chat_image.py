"""The chat service's image, built from the local base and run by the real Docker engine.

The container finds "the host's Foundry Local" the way it does on a laptop: through host.docker.internal
and FOUNDRY_LOCAL_PORT (default upstream list). Here the host's service is the embedded gateway with the
tiny model, as a local process listening on an address the Docker bridge reaches.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from chat_support import ChainlitClient

from tests.support.docker import build_image, docker, health, inspect, published_port, require_docker, running_container
from tests.support.process import GatewayProcess, start_gateway, wait_until

pytestmark = pytest.mark.e2e

IMAGE = "foundry-stack/chat-app:test"
MAX_IMAGE_BYTES = 350 * 1000 * 1000


@pytest.fixture(scope="module")
def image() -> str:
    require_docker()
    return build_image("chat-app", IMAGE)


@pytest.fixture(scope="module")
def host_foundry(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    tmp = tmp_path_factory.mktemp("host-foundry")
    service = start_gateway(
        tmp / "data", tmp / "gateway.log", FOUNDRY_MODEL_PATH=str(tiny_model), GATEWAY_HOST="0.0.0.0"
    )
    try:
        service.wait_for_state({"ready"})
        yield service
    finally:
        service.stop()


@pytest.fixture(scope="module")
def container(image: str, host_foundry: GatewayProcess) -> Iterator[tuple[str, float]]:
    port = host_foundry.url.rsplit(":", 1)[1]
    with running_container(
        "--publish", "127.0.0.1::8080",
        "--add-host", "host.docker.internal:host-gateway",
        "--env", f"FOUNDRY_LOCAL_PORT={port}",
        image,
    ) as container:  # fmt: skip
        yield container


def test_image_is_small_enough(image: str) -> None:
    size = int(docker("image", "inspect", "--format", "{{.Size}}", image).stdout.strip())
    assert size <= MAX_IMAGE_BYTES, f"image is {size / 1e6:.0f} MB"


def test_container_is_healthy_and_runs_as_a_non_root_user(container: tuple[str, float]) -> None:
    name, seconds = container
    assert health(name) == "healthy", docker("logs", name).stdout[-3000:]
    assert seconds <= 30, f"healthy after {seconds:.1f}s"
    assert docker("exec", name, "id", "-u").stdout.strip() != "0"
    assert inspect(name)["Config"]["User"] not in {"", "0", "root"}


def test_finds_the_hosts_foundry_local_and_chats(container: tuple[str, float], host_foundry: GatewayProcess) -> None:
    name, _ = container
    url = f"http://127.0.0.1:{published_port(name, 8080)}"

    def ready() -> bool:
        return httpx.get(f"{url}/readyz", timeout=5).status_code == 200

    wait_until(ready, 20, "/readyz 200 in the container")
    upstreams = httpx.get(f"{url}/readyz", timeout=5).json()["upstreams"]
    assert [u["state"] for u in upstreams] == ["up", "down"]  # the host's service, then the (absent) embedded one
    assert upstreams[0]["name"].startswith("host.docker.internal:")

    async def scenario():
        client = ChainlitClient(url)
        await client.connect()
        try:
            return await client.ask("hello from a container")
        finally:
            await client.close()

    reply = asyncio.run(scenario())
    assert reply.streamed_text
    assert "on host.docker.internal:" in reply.final_text()


def test_logs_are_json_lines(container: tuple[str, float]) -> None:
    name, _ = container
    lines = [line for line in docker("logs", name).stdout.splitlines() if line.startswith("{")]
    assert any(json.loads(line).get("event") == "upstream_state" for line in lines)
    assert "Traceback" not in docker("logs", name).stdout


def test_docker_stop_is_clean(image: str) -> None:
    name = docker("run", "--detach", image).stdout.strip()
    try:
        wait_until(lambda: health(name) == "healthy", 60, "the container to be healthy")
        docker("stop", "--time", "10", name)
        assert inspect(name)["State"]["ExitCode"] == 0, "SIGTERM must stop the service before Docker's SIGKILL"
    finally:
        docker("rm", "--force", name, check=False)
