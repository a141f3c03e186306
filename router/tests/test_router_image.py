"""The router's image, built from the local base and run by the real Docker engine, in front of the real
Foundry Local runtime (the gateway fixture, on 0.0.0.0 so that the container reaches it)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.docker import build_image, docker, health, inspect, published_port, require_docker, running_container
from tests.support.process import GatewayProcess, ready_gateway, wait_until

pytestmark = pytest.mark.e2e

IMAGE = "foundry-stack/router:test"
MODEL = "tiny-image-generic-cpu:1"


@pytest.fixture(scope="module")
def image() -> str:
    require_docker()
    return build_image("router", IMAGE)


@pytest.fixture(scope="module")
def runtime(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    tmp = tmp_path_factory.mktemp("router-image-runtime")
    with ready_gateway(
        tmp, GATEWAY_HOST="0.0.0.0", FOUNDRY_MODEL_PATH=str(tiny_model), FOUNDRY_MODEL_ID=MODEL
    ) as service:
        yield service


@pytest.fixture(scope="module")
def container(image: str, runtime: GatewayProcess) -> Iterator[str]:
    port = runtime.url.rsplit(":", 1)[1]
    with running_container(
        "--publish", "127.0.0.1::4000", "--read-only", "--cap-drop", "ALL",
        "--add-host", "host.docker.internal:host-gateway",
        "--env", f"FOUNDRY_LOCAL_URLS=http://host.docker.internal:{port}/v1",
        image,
    ) as (name, _seconds):  # fmt: skip
        yield name


def test_healthy_as_a_non_root_user_on_a_read_only_root(container: str) -> None:
    assert health(container) == "healthy", docker("logs", container).stdout[-3000:]
    assert docker("exec", container, "id", "-u").stdout.strip() == "10001"
    assert inspect(container)["Config"]["User"] not in {"", "0", "root"}


def test_it_routes_to_the_runtime_on_the_host(container: str) -> None:
    url = f"http://127.0.0.1:{published_port(container, 4000)}"
    wait_until(lambda: httpx.get(f"{url}/readyz", timeout=5).status_code == 200, 30, "the router ready")
    assert [m["id"] for m in httpx.get(f"{url}/v1/models", timeout=5).json()["data"]] == [MODEL]
    answer = httpx.post(
        f"{url}/v1/chat/completions",
        json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-foundry-upstream"].startswith("host.docker.internal:")
    assert answer.json()["usage"]["completion_tokens"] == 8
