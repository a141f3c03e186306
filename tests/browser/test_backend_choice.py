"""Which backend runs a model on both pages (webgpu-static/site/webgpu.mjs `chooseBackend`), run by Node.js on the
module as shipped: every choice against every kind of adapter."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from tests.browser.webgpu_site import WEBGPU_STATIC

pytestmark = pytest.mark.unit

HARDWARE = {"available": True, "fallback": False, "label": "a GPU"}
SOFTWARE = {"available": True, "fallback": True, "label": "SwiftShader"}
NONE = {"available": False, "reason": "no adapter"}


def choose(choice: str, gpu: dict) -> dict:
    node = shutil.which("node")
    assert node, "Node.js is missing: run scripts/install-prerequisites (Debian nodejs)"
    module = (WEBGPU_STATIC / "site" / "webgpu.mjs").as_uri()
    script = (
        f"import {{ chooseBackend }} from {json.dumps(module)};\n"
        f"console.log(JSON.stringify(chooseBackend({json.dumps(choice)}, {json.dumps(gpu)})));"
    )
    result = subprocess.run([node, "--input-type=module", "-e", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize(
    ("choice", "gpu", "ep", "why"),
    [
        ("auto", HARDWARE, "webgpu", "webgpu"),
        ("auto", SOFTWARE, "wasm", "fallback-adapter-skipped"),  # Auto: the CPU beats a software adapter
        ("auto", NONE, "wasm", "fallback"),
        ("webgpu", HARDWARE, "webgpu", "webgpu"),
        ("webgpu", SOFTWARE, "webgpu", "webgpu-fallback-adapter"),  # an explicit choice is obeyed
        ("webgpu", NONE, "wasm", "fallback"),
        ("wasm", HARDWARE, "wasm", "wasm"),
        ("wasm", NONE, "wasm", "wasm"),
    ],
)
def test_each_choice_on_each_adapter(choice: str, gpu: dict, ep: str, why: str) -> None:
    assert choose(choice, gpu) == {"ep": ep, "why": why}
