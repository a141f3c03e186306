"""webgpu-static/build_site.py on stand-in inputs: hashed names, the page's configuration, gzip twins."""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
import re
from pathlib import Path

import pytest

from tests.browser.webgpu_site import WEBGPU_STATIC

pytestmark = pytest.mark.unit

spec = importlib.util.spec_from_file_location("build_site", WEBGPU_STATIC / "build_site.py")
build_site = importlib.util.module_from_spec(spec)
spec.loader.exec_module(build_site)


@pytest.fixture
def inputs(tmp_path: Path) -> tuple[Path, Path]:
    ort = tmp_path / "dist"
    ort.mkdir()
    for name in (*build_site.ORT_FILES, "ort.min.mjs", "ort-wasm-simd-threaded.jsep.wasm"):
        (ort / name).write_text(f"// {name}\n" * 200)
    model = tmp_path / "model"
    model.mkdir()
    for name in build_site.MODEL_FILES:
        (model / name).write_text(json.dumps({"name": name}) * 50)
    return ort, model


def tree(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_site_layout_and_page_configuration(tmp_path: Path, inputs: tuple[Path, Path]) -> None:
    ort, model = inputs
    out = tmp_path / "site"
    config = build_site.build(WEBGPU_STATIC / "site", model, ort, "1.2.3", out)
    files = set(tree(out))
    # Only the ort.webgpu build and its WASM, in a versioned folder; the other dist files are left out.
    vendor = {f for f in files if f.startswith("vendor/") and not f.endswith(".gz")}
    assert vendor == {f"vendor/onnxruntime-web-1.2.3/{name}" for name in build_site.ORT_FILES}
    assert config["ort"] == "vendor/onnxruntime-web-1.2.3/ort.webgpu.min.mjs"
    for key in ("model", "samples", "modelInfo"):
        assert re.fullmatch(r"model/\w+\.[0-9a-f]{12}\.(onnx|json)", config[key]), config[key]
        assert config[key] in files
    html = (out / "index.html").read_text()
    assert "{{" not in html
    embedded = re.search(r'<script type="application/json" id="site-config">(.*?)</script>', html).group(1)
    assert json.loads(embedded) == config
    for asset in re.findall(r'(?:src|href)="([^"#][^"]*)"', html):
        assert re.fullmatch(r"assets/\w+\.[0-9a-f]{12}\.(mjs|css|svg)", asset), asset
        assert asset in files
    # Every compressible file has a gzip twin holding the same bytes.
    for name in files - {f for f in files if f.endswith(".gz")}:
        twin = out / (name + ".gz")
        assert twin.is_file(), name
        assert gzip.decompress(twin.read_bytes()) == (out / name).read_bytes()


def test_the_build_is_reproducible(tmp_path: Path, inputs: tuple[Path, Path]) -> None:
    ort, model = inputs
    build_site.build(WEBGPU_STATIC / "site", model, ort, "1.2.3", tmp_path / "a")
    build_site.build(WEBGPU_STATIC / "site", model, ort, "1.2.3", tmp_path / "b")
    assert tree(tmp_path / "a") == tree(tmp_path / "b")


def test_missing_inputs_and_bad_versions_fail(tmp_path: Path, inputs: tuple[Path, Path]) -> None:
    ort, model = inputs
    with pytest.raises(SystemExit, match="not a version"):
        build_site.build(WEBGPU_STATIC / "site", model, ort, "latest", tmp_path / "out")
    (ort / "ort.webgpu.min.mjs").unlink()
    with pytest.raises(SystemExit, match="missing inputs"):
        build_site.build(WEBGPU_STATIC / "site", model, ort, "1.2.3", tmp_path / "out")
