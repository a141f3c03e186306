"""The WebGPU demo page in Debian's Chromium, served by the real nginx (issue 5's acceptance)."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
from playwright.sync_api import Browser, Page

from tests.browser.recorded_page import RecordedPage
from tests.browser.webgpu_site import Nginx

pytestmark = pytest.mark.browser

READY = "body[data-state='ready']"
TOLERANCE = 1e-4
RUNS = 2  # repeated runs per classification: SwiftShader WebGPU is slow and the CPU is shared


class DigitsPage(RecordedPage):
    """The digits page, with its results read from output#result-json."""

    def open(self, ep: str, runs: int = RUNS, timeout: float = 90_000, extra: str = "") -> Page:
        self.page.goto(f"{self.server.url}/?ep={ep}&runs={runs}{extra}")
        self.page.locator(f"{READY}, body[data-state='error']").wait_for(timeout=timeout)
        assert self.page.get_attribute("body", "data-state") == "ready", self.page.inner_text("#session-status")
        return self.page

    def seq(self) -> int:
        return int(self.page.get_attribute("#result-json", "data-seq") or 0)

    def result_after(self, action, timeout: float = 60_000) -> dict:
        before = self.seq()
        action()
        self.page.locator(f"#result-json[data-seq='{before + 1}']").wait_for(state="attached", timeout=timeout)
        self.page.locator(READY).wait_for(timeout=timeout)
        return json.loads(self.page.text_content("#result-json") or "{}")

    def classify_sample(self, label: int) -> dict:
        button = self.page.get_by_role("button", name=f"Classify sample digit {label}")
        return self.result_after(button.click)


@pytest.fixture
def recorded(request: pytest.FixtureRequest, webgpu_server: Nginx):
    pages: list[DigitsPage] = []

    def make(browser: Browser) -> DigitsPage:
        page = DigitsPage(browser, webgpu_server)
        pages.append(page)
        return page

    yield make
    for page in pages:
        page.close()


def check_samples(page: DigitsPage, samples: list[dict], reference: np.ndarray, ep: str) -> list[int]:
    predictions = []
    for sample, expected in zip(samples, reference, strict=True):
        result = page.classify_sample(sample["label"])
        assert result["ep"] == ep
        got = np.array(result["probabilities"], dtype=np.float64)
        assert got.shape == (10,)
        diff = float(np.abs(got - expected).max())
        assert diff <= TOLERANCE, f"{ep}: sample {sample['label']} differs from onnxruntime by {diff:.2e}"
        assert result["prediction"] == int(expected.argmax())
        assert result["runs"] == RUNS and result["medianMs"] > 0 and result["firstRunMs"] > 0
        predictions.append(result["prediction"])
    return predictions


def test_wasm_forced_matches_python_onnxruntime(
    recorded, chromium_webgpu: Browser, digit_samples: list[dict], digit_reference: np.ndarray, artifacts: Path
) -> None:
    page = recorded(chromium_webgpu)
    p = page.open("wasm")
    assert p.get_attribute("body", "data-ep") == "wasm"
    predictions = check_samples(page, digit_samples, digit_reference, "wasm")
    # The held-out samples are all classified correctly by this model.
    assert predictions == [s["label"] for s in digit_samples]
    assert "WebAssembly (CPU)" in p.inner_text("#ran-on")
    p.screenshot(path=artifacts / "webgpu-demo-wasm.png", full_page=True)
    assert (artifacts / "webgpu-demo-wasm.png").stat().st_size > 10_000
    assert page.foreign_requests() == []
    assert page.csp_violations() == []


def test_webgpu_matches_python_onnxruntime(
    recorded, chromium_webgpu: Browser, digit_samples: list[dict], digit_reference: np.ndarray, artifacts: Path
) -> None:
    page = recorded(chromium_webgpu)
    p = page.open("webgpu", timeout=180_000)
    assert p.get_attribute("body", "data-ep") == "webgpu"
    # SwiftShader is reported, and flagged as a fallback (software) adapter.
    assert p.get_attribute("body", "data-webgpu") == "fallback"
    assert p.inner_text("#gpu-fallback").startswith("yes")
    assert "swiftshader" in p.inner_text("#gpu-adapter").lower()
    assert p.get_attribute("#backend-note", "data-kind") == "webgpu-fallback-adapter"
    predictions = check_samples(page, digit_samples, digit_reference, "webgpu")
    assert predictions == [int(r.argmax()) for r in digit_reference]
    result = json.loads(p.text_content("#result-json") or "{}")
    assert result["webgpu"]["fallback"] is True
    assert "WebGPU" in p.inner_text("#ran-on")
    p.screenshot(path=artifacts / "webgpu-demo-webgpu.png", full_page=True)
    assert (artifacts / "webgpu-demo-webgpu.png").stat().st_size > 10_000
    assert page.foreign_requests() == []
    assert page.csp_violations() == []


@pytest.mark.parametrize("ep", ["auto", "webgpu"])
def test_without_the_webgpu_flag_the_page_falls_back_to_wasm_and_says_so(
    recorded, chromium_plain: Browser, digit_reference: np.ndarray, ep: str
) -> None:
    page = recorded(chromium_plain)
    p = page.open(ep)
    assert p.get_attribute("body", "data-ep") == "wasm"
    assert p.get_attribute("body", "data-webgpu") == "unavailable"
    note = p.locator("#backend-note")
    assert note.get_attribute("data-kind") == "fallback"
    assert note.get_attribute("role") == "status"
    text = note.inner_text()
    assert "WebGPU is unavailable" in text and "WebAssembly (CPU)" in text
    assert p.inner_text("#gpu-status").startswith("not available")
    assert p.inner_text("#ep-active") == "WebAssembly (CPU)"
    result = page.classify_sample(7)
    assert result["ep"] == "wasm" and result["requestedEp"] == ep and result["webgpu"] is None
    assert float(np.abs(np.array(result["probabilities"]) - digit_reference[7]).max()) <= TOLERANCE
    assert page.foreign_requests() == []
    assert page.csp_violations() == []


def test_auto_prefers_wasm_over_a_software_webgpu_adapter(recorded, chromium_webgpu: Browser) -> None:
    page = recorded(chromium_webgpu)
    p = page.open("auto")
    assert p.get_attribute("body", "data-webgpu") == "fallback"
    assert p.get_attribute("body", "data-ep") == "wasm"
    note = p.locator("#backend-note")
    assert note.get_attribute("data-kind") == "fallback-adapter-skipped"
    assert "software fallback adapter" in note.inner_text() and "WebAssembly (CPU)" in note.inner_text()
    assert page.classify_sample(2)["ep"] == "wasm"


def test_the_page_is_cross_origin_isolated_and_loads_only_from_its_origin(recorded, chromium_plain: Browser) -> None:
    page = recorded(chromium_plain)
    p = page.open("wasm")
    result = page.classify_sample(0)
    assert result["crossOriginIsolated"] is True
    assert p.inner_text("#isolation") == "yes"
    paths = {urlsplit(url).path for url in page.requests}
    assert any(path.endswith("/ort.webgpu.min.mjs") for path in paths)
    assert any(path.endswith("/ort-wasm-simd-threaded.asyncify.wasm") for path in paths)
    assert any(path.startswith("/model/digits.") for path in paths)
    assert page.foreign_requests() == []
    assert page.csp_violations() == []


def test_multi_threaded_wasm_runs_under_the_sites_headers(
    recorded, chromium_plain: Browser, digit_reference: np.ndarray
) -> None:
    # Two threads need SharedArrayBuffer (COOP/COEP) and ORT's worker (CSP worker-src 'self').
    page = recorded(chromium_plain)
    p = page.open("wasm", extra="&threads=2")
    result = page.classify_sample(5)
    assert result["wasmThreads"] == 2 and result["crossOriginIsolated"] is True
    assert p.inner_text("#ran-on") == "WebAssembly (CPU), 2 threads"
    assert float(np.abs(np.array(result["probabilities"]) - digit_reference[5]).max()) <= TOLERANCE
    assert page.foreign_requests() == []
    assert page.csp_violations() == []


def test_switching_provider_in_the_page_reruns_the_last_input(
    recorded, chromium_webgpu: Browser, digit_reference: np.ndarray
) -> None:
    page = recorded(chromium_webgpu)
    p = page.open("wasm")
    first = page.classify_sample(4)
    assert first["ep"] == "wasm"
    # The radio buttons are labelled; choosing one re-runs the last input on the new provider.
    again = page.result_after(p.get_by_role("radio", name="WebGPU", exact=True).check, timeout=180_000)
    assert again["ep"] == "webgpu" and again["label"] == 4
    assert p.get_attribute("body", "data-ep") == "webgpu"
    for result in (first, again):
        assert float(np.abs(np.array(result["probabilities"]) - digit_reference[4]).max()) <= TOLERANCE


def test_drawing_with_the_keyboard(recorded, chromium_plain: Browser, artifacts: Path) -> None:
    page = recorded(chromium_plain)
    p = page.open("wasm")
    pad = p.get_by_role("img", name="Drawing area for a digit")
    assert pad.get_attribute("tabindex") == "0"
    pad.focus()
    # A vertical stroke: pen down, eight steps down, then classify with Enter.
    for _ in range(5):
        p.keyboard.press("ArrowUp")
    p.keyboard.press("Space")
    for _ in range(10):
        p.keyboard.press("ArrowDown")
    result = page.result_after(lambda: p.keyboard.press("Enter"))
    assert result["source"] == "drawing" and result["label"] is None
    assert abs(sum(result["probabilities"]) - 1) < 1e-4
    assert result["prediction"] == 1, result["probabilities"]
    p.screenshot(path=artifacts / "webgpu-demo-keyboard.png", full_page=True)
    # Every control is labelled.
    assert p.get_by_label("Repeated runs for the median latency").count() == 1
    for name in ("Auto (WebGPU on a hardware adapter, else WASM)", "WebGPU", "WebAssembly (CPU)"):
        assert p.get_by_role("radio", name=name, exact=True).count() == 1
    assert p.get_by_role("button", name="Classify drawing").count() == 1
    assert p.get_by_role("button", name="Clear").count() == 1
    assert p.get_by_role("button", name="Classify sample digit 9").count() == 1


def test_drawing_with_the_pointer(recorded, chromium_plain: Browser) -> None:
    page = recorded(chromium_plain)
    p = page.open("wasm")
    box = p.locator("#pad").bounding_box()
    assert box is not None
    x, top = box["x"] + box["width"] / 2, box["y"] + box["height"] * 0.15

    def stroke() -> None:
        p.mouse.move(x, top)
        p.mouse.down()
        p.mouse.move(x, box["y"] + box["height"] * 0.85, steps=12)
        p.mouse.up()

    result = page.result_after(stroke)
    assert result["source"] == "drawing"
    assert result["prediction"] == 1, result["probabilities"]
