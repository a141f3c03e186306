"""Fixtures for the WebGPU demos' tests: the built site, the chat page's model folders, the real nginx serving
them, Debian's Chromium, and what Python ONNX Runtime makes of the same inputs."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from playwright.sync_api import Browser, Playwright, sync_playwright

from tests.browser.webgpu_site import Nginx, build_site, launch_chromium, serve
from tests.support.process import REPO

# The venv scripts/make-model builds the models with: it has onnxruntime-genai, the runtime inside Foundry Local.
GENAI_PYTHON = REPO / ".venvs" / "model-build" / "bin" / "python"
CHAT_REFERENCE = Path(__file__).with_name("chat_reference.py")
# A weights file this large cannot be held by ONNX Runtime Web (32-bit WebAssembly memory); sparse on disk.
TOO_LARGE_BYTES = 5 * 1024**3
# The size of a real small model's weights (an int4 0.5B model is about 820 MiB): the tiny model's data padded
# with zeros, which ONNX Runtime never reads (each weight is read at its own offset and length).
REAL_SIZE_BYTES = 768 * 1024**2


def model_copy(folder: Path, tiny_model: Path, leave_out: str = "") -> Path:
    """A model folder whose files link to the tiny model's, but for leave_out (written by the caller)."""
    folder.mkdir()
    for file in tiny_model.iterdir():
        if file.name != leave_out and not file.name.startswith("."):
            (folder / file.name).symlink_to(file)
    return folder


# The real model's folder on the test site, as scripts/make-model names it.
REAL_MODEL = "smollm2-135m-instruct"


@pytest.fixture(scope="session")
def chat_models(tiny_model: Path, chat_model: Path) -> Iterator[Path]:
    """The chat page's model folders: the real model (SmolLM2-135M-Instruct), the tiny model, and broken copies of
    the tiny one for the bad-input tests."""
    # Not under pytest's tmp_path (mode 700): nginx's workers run as nobody when the tests run as root.
    with tempfile.TemporaryDirectory(prefix="chat-models-") as tmp:
        models = Path(tmp)
        models.chmod(0o755)
        yield fill_chat_models(models, tiny_model, chat_model)


def fill_chat_models(models: Path, tiny_model: Path, chat_model: Path) -> Path:
    (models / REAL_MODEL).symlink_to(chat_model)
    (models / "tiny-chat").symlink_to(tiny_model)
    model_copy(models / "no-tokenizer", tiny_model, leave_out="tokenizer.json")
    corrupt = model_copy(models / "corrupt", tiny_model, leave_out="model.onnx")
    (corrupt / "model.onnx").write_bytes(b"this is not an ONNX model\n" * 500)
    huge = model_copy(models / "too-large", tiny_model, leave_out="model.onnx.data")
    with (huge / "model.onnx.data").open("wb") as data:
        data.truncate(TOO_LARGE_BYTES)
    padded = model_copy(models / "real-size", tiny_model, leave_out="model.onnx.data")
    (padded / "model.onnx.data").write_bytes((tiny_model / "model.onnx.data").read_bytes())
    with (padded / "model.onnx.data").open("r+b") as data:
        data.truncate(REAL_SIZE_BYTES)
    return models


@pytest.fixture(scope="session")
def webgpu_server(webgpu_site: Path, chat_models: Path) -> Iterator[Nginx]:
    with serve(webgpu_site, models=chat_models) as server:
        yield server


@pytest.fixture(scope="session")
def webgpu_site() -> Path:
    return build_site()


@pytest.fixture(scope="session")
def genai_reference(chat_models: Path) -> Callable[..., dict]:
    """reference(messages, tokens, model="tiny-chat", float32_activations=False): the prompt, its ids and the greedy
    answer's ids from ONNX Runtime GenAI for a model folder of the test site (tests/browser/chat_reference.py, in the
    model-build venv, which has onnxruntime-genai). float32_activations: see chat_reference.py."""
    if not GENAI_PYTHON.exists():
        raise RuntimeError(f"{GENAI_PYTHON} is missing: scripts/make-model makes it (scripts/test runs that)")

    def reference(messages: list[dict], tokens: int, model: str = "tiny-chat", float32_activations: bool = False):
        command = [str(GENAI_PYTHON), str(CHAT_REFERENCE), str((chat_models / model).resolve()), str(tokens)]
        result = subprocess.run(
            command + (["--float32-activations"] if float32_activations else []),
            input=json.dumps(messages),
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "PYTHONHASHSEED": "0"},
        )
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    return reference


# Package scope: Playwright's sync API keeps an event loop running in this thread while it is open, and
# later tiers (e2e) call asyncio.run().
@pytest.fixture(scope="package")
def webgpu_playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="package")
def chromium_webgpu(webgpu_playwright: Playwright) -> Iterator[Browser]:
    """Chromium with --enable-unsafe-webgpu: WebGPU on SwiftShader (a fallback adapter)."""
    browser = launch_chromium(webgpu_playwright, webgpu=True)
    yield browser
    browser.close()


@pytest.fixture(scope="package")
def chromium_plain(webgpu_playwright: Playwright) -> Iterator[Browser]:
    """Chromium without the WebGPU flag: no adapter, so the page must fall back to WASM."""
    browser = launch_chromium(webgpu_playwright, webgpu=False)
    yield browser
    browser.close()


@pytest.fixture(scope="session")
def digit_samples(webgpu_site: Path) -> list[dict]:
    (path,) = (webgpu_site / "model").glob("samples.*.json")
    return json.loads(path.read_text())["samples"]


@pytest.fixture(scope="session")
def digit_reference(webgpu_site: Path, digit_samples: list[dict]) -> np.ndarray:
    """The served model file run by Python's onnxruntime (CPU) on the samples: [10, 10] probabilities."""
    (model,) = (webgpu_site / "model").glob("digits.*.onnx")
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    pixels = np.array([s["pixels"] for s in digit_samples], dtype=np.float32)
    return session.run(["probabilities"], {"pixels": pixels})[0]
