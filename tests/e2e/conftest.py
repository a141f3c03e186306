"""Fixtures of the end-to-end tier: the Compose stack every module shares (tests/conftest.py builds its images)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.stack import ADMIN, EMBEDDED_MODEL, HOST_MODEL, Stack, write_timings
from tests.support.process import GatewayProcess, free_port, ready_gateway


@pytest.fixture(scope="package")
def host_foundry(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """The host's Foundry Local: the real runtime on this machine, on 0.0.0.0 so the Docker bridge reaches it, serving
    the tiny model (HOST_MODEL says why)."""
    tmp = tmp_path_factory.mktemp("host-foundry")
    with ready_gateway(
        tmp, GATEWAY_HOST="0.0.0.0", FOUNDRY_MODEL_PATH=str(tiny_model), FOUNDRY_MODEL_ID=HOST_MODEL
    ) as service:
        yield service


@pytest.fixture(scope="package")
def twin_port() -> int:
    """Where a second host Foundry Local, serving the embedded model's id, answers while a test runs it
    (test_stack.py): the router knows it from the start, as an upstream that is down until then."""
    return free_port()


# One stack for every e2e module (Open WebUI alone takes 30-60 s to start); each test leaves it healthy.
@pytest.fixture(scope="package")
def stack(
    offline_images: float, host_foundry: GatewayProcess, twin_port: int, chat_model: Path, artifacts: Path
) -> Iterator[Stack]:
    port = host_foundry.url.rsplit(":", 1)[1]
    stack = Stack.create(
        f"fs-e2e-{uuid.uuid4().hex[:8]}",
        OFFLINE_MODEL_DIR=str(chat_model),
        FOUNDRY_LOCAL_PORT=port,
        # The default list (the host's Foundry Local, then the embedded service), and the host twin.
        FOUNDRY_LOCAL_URLS=(
            f"http://host.docker.internal:{port}/v1,http://foundry-local:5273/v1,"
            f"http://host.docker.internal:{twin_port}/v1"
        ),
        # The chat service picks the embedded model first; the host's is chosen in the chat settings.
        MODEL=EMBEDDED_MODEL,
        MAX_TOKENS="24",
        WEBUI_SECRET_KEY="",
        # The load test reads the prompts sent upstream to prove each session got its own history only.
        LOG_PROMPTS="true",
    )
    stack.down(volumes=True)
    try:
        stack.up()
        yield stack
    finally:
        (artifacts / f"e2e-{stack.project}.log").write_text(stack.logs(tail=400))
        write_timings(artifacts, "offline-stack", stack, image_build_seconds=offline_images)
        stack.env["COMPOSE_PROFILES"] = "embedded"  # so that `down` removes every container of the project
        stack.down(volumes=True)


@pytest.fixture(scope="package")
def webui_token(stack: Stack) -> str:
    """The first account signed up over the API: it becomes the admin."""
    with stack.http("open-webui") as http:
        response = http.post("/api/v1/auths/signup", json=ADMIN)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["role"] == "admin"
        return body["token"]
