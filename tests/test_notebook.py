"""notebooks/chainlit_app.ipynb, executed (nbclient) against the real runtime and the real chat service."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import nbformat
import pytest
from nbclient import NotebookClient

from tests.support.chat import ChatProcess, start_chat
from tests.support.process import REPO, GatewayProcess, free_port

pytestmark = pytest.mark.integration

NOTEBOOK = REPO / "notebooks" / "chainlit_app.ipynb"


@pytest.fixture(scope="module")
def stack(
    gateway: GatewayProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[GatewayProcess, ChatProcess]]:
    chat = start_chat(tmp_path_factory.mktemp("notebook"), [f"{gateway.url}/v1"])
    try:
        chat.wait_healthy()
        yield gateway, chat
    finally:
        chat.stop()


def run(env: dict[str, str]) -> nbformat.NotebookNode:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(REPO)}})
    client.execute(env={**os.environ, **env})  # the kernel's environment
    return notebook


def output_text(notebook: nbformat.NotebookNode) -> str:
    return "".join(o.get("text", "") for c in notebook.cells if c.cell_type == "code" for o in c.outputs)


def test_notebook_discovers_the_runtime_and_reads_the_metrics(stack: tuple[GatewayProcess, ChatProcess]) -> None:
    gateway, chat = stack
    nobody = f"http://127.0.0.1:{free_port()}/v1"  # the first candidate does not answer
    out = output_text(run({"FOUNDRY_LOCAL_CANDIDATES": f"{nobody},{gateway.url}/v1", "CHAT_APP_URL": chat.url}))
    assert f"{nobody}: no answer" in out
    assert f"Using {gateway.healthz().json()['model']} at {gateway.url}/v1" in out
    assert "time to first token" in out
    assert "chat_upstream_up" in out


def test_notebook_takes_a_manual_url(stack: tuple[GatewayProcess, ChatProcess]) -> None:
    gateway, chat = stack
    out = output_text(run({"FOUNDRY_LOCAL_URL": f"{gateway.url}/v1", "CHAT_APP_URL": chat.url}))
    assert f"Manual URL {gateway.url}/v1" in out
    assert "time to first token" in out


def test_notebook_is_stored_without_outputs() -> None:
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in cells if c["cell_type"] == "code")
