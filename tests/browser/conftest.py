"""Fixtures for the WebGPU demo's tests: the built site, the real nginx serving it, Debian's Chromium."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from playwright.sync_api import Browser, Playwright, sync_playwright

from tests.browser.webgpu_site import Nginx, build_site, launch_chromium, serve


@pytest.fixture(scope="session")
def webgpu_site() -> Path:
    return build_site()


@pytest.fixture(scope="session")
def webgpu_server(webgpu_site: Path) -> Iterator[Nginx]:
    with serve(webgpu_site) as server:
        yield server


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
