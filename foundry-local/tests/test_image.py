"""The embedded service's image, built from the local base and run by the real Docker engine."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.docker import build_image, docker, health, inspect, published_port, require_docker, running_container
from tests.support.process import chat_model_dir, wait_until

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


def test_the_batched_engine_serves_concurrent_questions_in_the_image(image: str) -> None:
    """FOUNDRY_ENGINE=batched in the container as compose runs it (non-root, read-only root, /tmp a small tmpfs, no
    capabilities), on the real model: two questions at once, each answered with its own capital."""
    model = chat_model_dir()
    with running_container(
        "--publish", "127.0.0.1::5273", "--user", "10001:10001", "--read-only", "--init",
        "--tmpfs", "/tmp:size=64m",  # noqa: S108 - the container's own /tmp, as compose.yaml mounts it
        "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
        "--volume", f"{model}:/models/{model.name}:ro",
        "--env", f"FOUNDRY_MODEL_PATH=/models/{model.name}", "--env", "FOUNDRY_ENGINE=batched",
        image,
    ) as (name, _):  # fmt: skip
        url = f"http://127.0.0.1:{published_port(name, 5273)}"
        wait_until(lambda: httpx.get(f"{url}/readyz").status_code == 200, 120, "the batched engine serving")
        served = httpx.get(f"{url}/v1/models").json()["data"][0]["id"]

        async def ask(client: httpx.AsyncClient, country: str) -> str:
            question = {"role": "user", "content": f"What is the capital of {country}?"}
            body = {"model": served, "messages": [question], "max_tokens": 24, "temperature": 0}
            answer = await client.post(f"{url}/v1/chat/completions", json=body, timeout=60)
            assert answer.status_code == 200, answer.text
            return answer.json()["choices"][0]["message"]["content"]

        async def both() -> list[str]:
            async with httpx.AsyncClient() as client:
                return await asyncio.gather(ask(client, "France"), ask(client, "Japan"))

        france, japan = asyncio.run(both())
        assert "Paris" in france and "Tokyo" in japan, (france, japan, docker("logs", name).stdout[-3000:])
        assert '"engine": "batched"' in docker("logs", name).stdout
