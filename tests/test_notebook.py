"""notebooks/chainlit_app.ipynb, executed (nbclient) against real processes: the runtime serving the real model
(the chat_gateway fixture), a router in front of it, and the chat service in front of the router, as Compose runs
them. The notebook asks, greedily, for the capital of France: its answer must name Paris."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.support.chat import ChatProcess, start_chat
from tests.support.process import REPO, GatewayProcess, free_port
from tests.support.router import RouterProcess, start_router

pytestmark = pytest.mark.integration

NOTEBOOK = REPO / "notebooks" / "chainlit_app.ipynb"
QUESTION = "What is the capital of France?"  # the notebook's question (section 3)


@dataclass
class Stack:
    gateway: GatewayProcess
    router: RouterProcess
    chat: ChatProcess

    @property
    def model(self) -> str:
        return self.gateway.healthz().json()["model"]

    @property
    def upstream(self) -> str:
        """The gateway's name at the router (host:port), what X-Foundry-Upstream says."""
        return self.gateway.url.removeprefix("http://")

    def env(self, **extra: str) -> dict[str, str]:
        return {"ROUTER_URL": self.router.base_url, "CHAT_APP_URL": self.chat.url, **extra}


@pytest.fixture(scope="module")
def stack(chat_gateway: GatewayProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("notebook")
    router = start_router(tmp / "router", [f"{chat_gateway.url}/v1"])
    try:
        router.wait_ready(model=chat_gateway.healthz().json()["model"])
        chat = start_chat(tmp, [f"{chat_gateway.url}/v1"], router=router)
        try:
            chat.wait_healthy()
            yield Stack(chat_gateway, router, chat)
        finally:
            chat.stop()
    finally:
        router.stop()


def run(env: dict[str, str]) -> nbformat.NotebookNode:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(REPO)}})
    # The kernel's environment: this one, without settings of the notebook the caller did not give.
    unset = {"FOUNDRY_LOCAL_URL", "FOUNDRY_LOCAL_CANDIDATES", "ROUTER_URL", "ROUTER_API_KEY", "MODEL", "CHAT_APP_URL"}
    client.execute(env={**{k: v for k, v in os.environ.items() if k not in unset}, **env})
    return notebook


def output_text(notebook: nbformat.NotebookNode) -> str:
    return "".join(o.get("text", "") for c in notebook.cells if c.cell_type == "code" for o in c.outputs)


def streamed_answer(out: str) -> str:
    """The answer as section 3 printed it: after its question, before the timing, without the router's headers."""
    assert f"Question: {QUESTION}\n" in out, out
    section = out.split(f"Question: {QUESTION}\n", 1)[1].split("time to first token", 1)[0]
    return "".join(line for line in section.splitlines(keepends=True) if not re.match(r"X-[\w-]+: ", line))


def test_notebook_discovers_the_runtime_then_uses_the_router(stack: Stack) -> None:
    nobody = f"http://127.0.0.1:{free_port()}/v1"  # the first candidate does not answer
    # Answered in full (200), also when the client closes right after [DONE], before the runtime closes its end.
    answered = stack.router.metric("router_requests_total", code="200")
    gateway_url = f"{stack.gateway.url}/v1"
    out = output_text(run(stack.env(FOUNDRY_LOCAL_CANDIDATES=f"{nobody},{gateway_url}")))
    # The course's discovery, then the router as the one endpoint.
    assert f"{nobody}: no answer" in out
    assert f"Found Foundry Local at {gateway_url}, serving {stack.model}" in out
    assert f"{stack.model}: runs on {stack.upstream}" in out
    assert f"Using {stack.model} through the router at {stack.router.base_url}" in out
    # The answer streamed through the router, which says where it ran and why.
    assert f"X-Foundry-Upstream: {stack.upstream}\n" in out
    assert "X-Foundry-Upstream-Kind: local" in out
    assert "X-Foundry-Route-Reason: " in out
    assert "time to first token" in out
    assert "Paris" in streamed_answer(out), out
    assert stack.router.metric("router_requests_total", code="200") > answered
    # The router's health and metrics, then the chat service's view of the router.
    assert f"router /readyz: 200, ready: True, models: ['{stack.model}']" in out
    assert f"  {stack.upstream} (" in out
    assert f'router_upstream_up{{cloud="false",upstream="{stack.upstream}"}} = 1\n' in out
    assert "chat /readyz: 200, ready: True" in out
    assert f"its router: {stack.router.base_url}" in out
    assert "chat_router_up = 1\n" in out


def test_notebook_takes_a_manual_url(stack: Stack) -> None:
    gateway_url = f"{stack.gateway.url}/v1"
    out = output_text(run(stack.env(FOUNDRY_LOCAL_URL=gateway_url)))
    assert f"Manual URL {gateway_url}: ['{stack.model}']" in out
    assert f"Using {stack.model} through the router at {stack.router.base_url}" in out
    assert "time to first token" in out
    assert "Paris" in streamed_answer(out), out


def test_notebook_sends_the_router_key_and_needs_no_chat_service(chat_gateway: GatewayProcess, tmp_path: Path) -> None:
    """A router with ROUTER_API_KEYS answers the notebook's ROUTER_API_KEY; no direct Foundry Local and no chat
    service answer (only the router reaches the runtime): the notebook says so and still runs."""
    router = start_router(tmp_path, [f"{chat_gateway.url}/v1"], ROUTER_API_KEYS="notebook-key")
    try:
        router.wait_ready()
        nobody = f"http://127.0.0.1:{free_port()}"
        env = {"FOUNDRY_LOCAL_CANDIDATES": f"{nobody}/v1", "CHAT_APP_URL": nobody}
        out = output_text(run({**env, "ROUTER_URL": router.base_url, "ROUTER_API_KEY": "notebook-key"}))
        assert "No Foundry Local answered directly" in out
        assert "time to first token" in out
        assert "Paris" in streamed_answer(out), out
        assert f"No chat service at {nobody}" in out
    finally:
        router.stop()


def test_notebook_is_stored_without_outputs() -> None:
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in cells if c["cell_type"] == "code")
