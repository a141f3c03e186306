"""The embedded service's image, built from the local base and run by the real Docker engine."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.docker import build_image, docker, health, inspect, published_port, require_docker, running_container
from tests.support.process import wait_until

pytestmark = pytest.mark.e2e

IMAGE = "foundry-stack/foundry-local:test"


@pytest.fixture(scope="module")
def image() -> str:
    require_docker()
    return build_image("foundry-local", IMAGE)


@pytest.fixture(scope="module")
def container(image: str, tiny_model: Path) -> Iterator[tuple[str, float]]:
    with running_container(
        "--publish", "127.0.0.1::5273",
        "--volume", f"{tiny_model}:/models/tiny-chat:ro",
        "--env", "FOUNDRY_MODEL_PATH=/models/tiny-chat",
        image,
    ) as container:  # fmt: skip
        yield container


def test_container_becomes_healthy(container: tuple[str, float]) -> None:
    # Healthy means running (liveness): the image's HEALTHCHECK does not wait for the model.
    name, _ = container
    assert health(name) == "healthy", docker("logs", name).stdout[-3000:]


def test_readyz_is_200_once_the_model_is_loaded(container: tuple[str, float]) -> None:
    name, _ = container
    url = f"http://127.0.0.1:{published_port(name, 5273)}"
    wait_until(lambda: httpx.get(f"{url}/readyz").status_code == 200, 60, "the model loaded (/readyz 200)")
    body = httpx.get(f"{url}/readyz").json()
    assert body["state"] == "ready" and body["models"] == ["tiny-chat-generic-cpu:1"], body


def test_container_runs_as_a_non_root_user(container: tuple[str, float]) -> None:
    name, _ = container
    assert docker("exec", name, "id", "-u").stdout.strip() != "0"
    assert inspect(name)["Config"]["User"] not in {"", "0", "root"}


def test_healthz_reports_the_mounted_model_and_chat_works(container: tuple[str, float]) -> None:
    name, _ = container
    url = f"http://127.0.0.1:{published_port(name, 5273)}"
    wait_until(lambda: httpx.get(f"{url}/healthz").json()["state"] == "ready", 60, "the model loaded")
    body = httpx.get(f"{url}/healthz").json()
    assert body["state"] == "ready"
    assert body["model"] == "tiny-chat-generic-cpu:1"
    answer = httpx.post(
        f"{url}/v1/chat/completions",
        json={"model": body["model"], "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8},
        timeout=30,
    )
    assert answer.status_code == 200
    assert httpx.post(f"{url}/shutdown").status_code == 404


def test_logs_are_json_lines(container: tuple[str, float]) -> None:
    name, _ = container
    wait_until(lambda: '"event": "model_ready"' in docker("logs", name).stdout, 60, "the model_ready line")
    lines = [line for line in docker("logs", name).stdout.splitlines() if line.startswith("{")]
    assert any('"event": "model_ready"' in line for line in lines)


def test_docker_stop_is_clean(image: str, tiny_model: Path) -> None:
    name = docker(
        "run", "--detach", "--volume", f"{tiny_model}:/models/tiny-chat:ro",
        "--env", "FOUNDRY_MODEL_PATH=/models/tiny-chat", image,
    ).stdout.strip()  # fmt: skip
    try:
        wait_until(lambda: health(name) == "healthy", 60, "the container to be healthy")
        docker("stop", "--time", "10", name)
        state = inspect(name)["State"]
        # 143 is SIGTERM re-raised after the graceful shutdown; 137 would be Docker's SIGKILL.
        assert state["ExitCode"] in {0, 143}, docker("logs", name).stdout[-3000:]
        assert '"event": "runtime_stopped"' in docker("logs", name).stdout
    finally:
        docker("rm", "--force", "--volumes", name, check=False)
