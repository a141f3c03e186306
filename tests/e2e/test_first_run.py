"""First run: the embedded service still downloading its model holds up nothing.

With the host's Foundry Local serving a model (the host_foundry fixture: the tiny model under HOST_MODEL) and the
embedded service held mid-download (FOUNDRY_MODEL_URL on an archive server of this test's, on this machine, that
sends a third of the archive and then waits), `up -d --wait` returns, the chat answers from the host's runtime and
shows the download in its banner, and the router's /readyz shows both. Released, the download completes and the
embedded model is served too. A stack of its own (three services); the tiny model, since only who answered counts.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from chat_support import Reply, connected

from tests.e2e.stack import HOST_MODEL, Stack
from tests.support.archive_server import ArchiveServer, model_archive, serve_archive
from tests.support.process import GatewayProcess, metric_sum, wait_until

pytestmark = pytest.mark.e2e

ARCHIVE = "first-run-model"
EMBEDDED = f"{ARCHIVE}-generic-cpu:1"  # the id the archive's name gives
SERVICES = ("foundry-local", "router", "chat-app")
BANNER = re.compile(r"\*\*The embedded model is downloading (\d+)%\*\* on `[^`]*foundry-local")


@pytest.fixture(scope="module")
def archive_server(tiny_model: Path) -> Iterator[ArchiveServer]:
    body = model_archive(tiny_model, ARCHIVE)
    # On every address, so that the foundry-local container reaches it through the Docker bridge.
    with serve_archive(body, hold_at=len(body) // 3, host="0.0.0.0") as server:
        yield server


@pytest.fixture(scope="module")
def first_run(
    offline_images: float, host_foundry: GatewayProcess, archive_server: ArchiveServer, artifacts: Path
) -> Iterator[Stack]:
    port = host_foundry.url.rsplit(":", 1)[1]
    stack = Stack.create(
        f"fs-first-run-{uuid.uuid4().hex[:8]}",
        extra_files=("tests/e2e/compose.first-run.yaml",),
        FOUNDRY_MODEL_URL=archive_server.url(f"{ARCHIVE}.tar.gz", host="host.docker.internal"),
        FOUNDRY_LOCAL_PORT=port,
        FOUNDRY_LOCAL_URLS=f"http://host.docker.internal:{port}/v1,http://foundry-local:5273/v1",
        MODEL=HOST_MODEL,
        MAX_TOKENS="16",
    )
    stack.down(volumes=True)
    try:
        yield stack
    finally:
        (artifacts / f"e2e-{stack.project}.log").write_text(stack.logs(tail=400))
        archive_server.release()
        stack.down(volumes=True)


def host_chat_requests(host: GatewayProcess) -> float:
    text = httpx.get(f"{host.url}/metrics", timeout=5).text
    return metric_sum(text, "foundry_local_gateway_requests_total", route="/v1/chat/completions")


def embedded_upstream(readyz: dict) -> dict:
    """The embedded service as the router lists it (named `foundry-local@ADDRESS:5273` once resolved)."""
    return next((u for u in readyz.get("upstreams", ()) if u["name"].startswith("foundry-local")), {})


def held_part_way(body: dict) -> bool:
    return body.get("state") == "downloading" and 0 < (body.get("download") or {}).get("percent", 0) < 100


async def first_session(url: str) -> tuple[str, Reply]:
    """A new chat tab: the download banner it gets (sent by its own task, before or after the settings), then one
    question answered."""
    async with connected(url) as client:
        texts = client.started.texts()
        while not any(BANNER.search(text) for text in texts):
            _, step = await client.next_any({"new_message", "update_message"})
            texts.append(step["output"])
        await client.change_settings({"model": HOST_MODEL})
        return next(text for text in texts if BANNER.search(text)), await client.ask("Hello, is anyone there?")


def test_nothing_waits_for_the_embedded_download_and_the_host_answers_meanwhile(
    first_run: Stack, host_foundry: GatewayProcess, archive_server: ArchiveServer
) -> None:
    first_run.up(*SERVICES)  # returns while the download is held: nothing waits for it

    containers = {c["Service"]: c for c in first_run.ps()}
    assert all(containers[s]["State"] == "running" and containers[s]["Health"] == "healthy" for s in SERVICES)
    gateway = first_run.url("foundry-local")
    wait_until(lambda: held_part_way(httpx.get(f"{gateway}/healthz", timeout=5).json()), 60, "the download held")
    assert httpx.get(f"{gateway}/healthz", timeout=5).status_code == 200  # live
    readyz = httpx.get(f"{gateway}/readyz", timeout=5)
    assert readyz.status_code == 503 and held_part_way(readyz.json()), readyz.text  # not ready
    assert archive_server.requests == 1

    # The router serves the host's model, and says the embedded one is on its way; the chat sees the same.
    def both_seen(url: str) -> bool:
        response = httpx.get(f"{url}/readyz", timeout=5)
        body = response.json()
        embedded = embedded_upstream(body)
        return (
            response.status_code == 200
            and HOST_MODEL in body["models"]
            and embedded.get("service_state") == "downloading"
            and 0 < (embedded.get("download_percent") or 0) < 100
        )

    wait_until(lambda: both_seen(first_run.url("router")), 60, "the router's /readyz showing both", interval=0.5)
    router = httpx.get(f"{first_run.url('router')}/readyz", timeout=5).json()
    assert EMBEDDED not in router["models"] and embedded_upstream(router)["state"] == "down"
    wait_until(lambda: both_seen(first_run.url("chat-app")), 60, "the chat seeing both", interval=0.5)

    before = host_chat_requests(host_foundry)
    banner, reply = asyncio.run(first_session(first_run.url("chat-app")))
    assert 0 < int(BANNER.search(banner).group(1)) < 100, banner
    # The tiny model answers gibberish: what counts is that the host's runtime answered, and said so.
    assert reply.streamed_text.strip(), reply.events
    assert HOST_MODEL in reply.final_text(), reply.final_text()
    assert host_chat_requests(host_foundry) > before, "the host's runtime served the answer"

    # Released, the download completes: the embedded model is served too, with no restart.
    archive_server.release()
    wait_until(lambda: EMBEDDED in first_run.router_models(), 120, "the router serving the embedded model", 0.5)
    assert httpx.get(f"{gateway}/readyz", timeout=5).status_code == 200
    assert HOST_MODEL in first_run.router_models()
    assert archive_server.requests == 1
