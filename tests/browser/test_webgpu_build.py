"""webgpu-static/build_site.py on stand-in inputs: hashed names, the page's configuration, gzip twins."""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import json
import re
import shutil
from pathlib import Path

import pytest

from tests.browser.webgpu_site import WEBGPU_STATIC

pytestmark = pytest.mark.unit

spec = importlib.util.spec_from_file_location("build_site", WEBGPU_STATIC / "build_site.py")
build_site = importlib.util.module_from_spec(spec)
spec.loader.exec_module(build_site)


def fake_package(node_modules: Path, package: str, version: str, files: tuple[str, ...]) -> None:
    dist = node_modules / package / "dist"
    dist.mkdir(parents=True)
    (node_modules / package / "package.json").write_text(json.dumps({"name": package, "version": version}))
    for name in files:
        (dist / name).write_text(f"// {name}\n" * 200)


@pytest.fixture
def inputs(tmp_path: Path) -> tuple[Path, Path]:
    node_modules = tmp_path / "node_modules"
    fake_package(
        node_modules,
        "onnxruntime-web",
        "1.2.3",
        (*build_site.ORT_FILES, "ort.min.mjs", "ort-wasm-simd-threaded.jsep.wasm"),
    )
    fake_package(node_modules, "@huggingface/tokenizers", "0.2.0", ("tokenizers.min.mjs", "tokenizers.cjs"))
    fake_package(node_modules, "@huggingface/jinja", "0.5.13", ("index.js", "index.cjs"))
    model = tmp_path / "model"
    model.mkdir()
    for name in build_site.MODEL_FILES:
        (model / name).write_text(json.dumps({"name": name}) * 50)
    return node_modules, model


def tree(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_site_layout_and_page_configuration(tmp_path: Path, inputs: tuple[Path, Path]) -> None:
    node_modules, model = inputs
    out = tmp_path / "site"
    config = build_site.build(WEBGPU_STATIC / "site", model, node_modules, out)
    files = set(tree(out))
    # Only the files the pages load, each package in a versioned folder; the other dist files are left out.
    vendor = {f for f in files if f.startswith("vendor/") and not f.endswith(".gz")}
    assert vendor == {f"vendor/onnxruntime-web-1.2.3/{name}" for name in build_site.ORT_FILES} | {
        "vendor/huggingface-tokenizers-0.2.0/tokenizers.min.mjs",
        "vendor/huggingface-jinja-0.5.13/index.js",
    }
    assert config["ort"] == "vendor/onnxruntime-web-1.2.3/ort.webgpu.min.mjs"
    assert config["tokenizers"] == "vendor/huggingface-tokenizers-0.2.0/tokenizers.min.mjs"
    assert config["jinja"] == "vendor/huggingface-jinja-0.5.13/index.js"
    for key in ("model", "samples", "modelInfo"):
        assert re.fullmatch(r"model/\w+\.[0-9a-f]{12}\.(onnx|json)", config[key]), config[key]
        assert config[key] in files
    for page in build_site.PAGES:
        html = (out / page).read_text()
        assert "{{" not in html
        embedded = re.search(r'<script type="application/json" id="site-config">(.*?)</script>', html).group(1)
        assert json.loads(embedded) == config
        for asset in re.findall(r'(?:src|href)="([^"#.][^"]*)"', html):
            assert re.fullmatch(r"assets/\w+\.[0-9a-f]{12}\.(mjs|css|svg)", asset), asset
            assert asset in files
    # Modules import each other by their hashed names, and every name they import is on the site.
    for module in (out / "assets").glob("*.mjs"):
        for imported in re.findall(r"from\s+'\./([^']+)'", module.read_text()):
            assert re.fullmatch(r"[\w-]+\.[0-9a-f]{12}\.mjs", imported), (module.name, imported)
            assert f"assets/{imported}" in files, (module.name, imported)
    # Every compressible file has a gzip twin holding the same bytes.
    for name in files - {f for f in files if f.endswith(".gz")}:
        twin = out / (name + ".gz")
        assert twin.is_file(), name
        assert gzip.decompress(twin.read_bytes()) == (out / name).read_bytes()


def test_the_build_is_reproducible(tmp_path: Path, inputs: tuple[Path, Path]) -> None:
    node_modules, model = inputs
    build_site.build(WEBGPU_STATIC / "site", model, node_modules, tmp_path / "a")
    build_site.build(WEBGPU_STATIC / "site", model, node_modules, tmp_path / "b")
    assert tree(tmp_path / "a") == tree(tmp_path / "b")


def test_a_changed_module_renames_the_modules_that_import_it(tmp_path: Path, inputs: tuple[Path, Path]) -> None:
    node_modules, model = inputs
    site = tmp_path / "src"
    shutil.copytree(WEBGPU_STATIC / "site", site)
    build_site.build(site, model, node_modules, tmp_path / "a")
    with (site / "sampling.mjs").open("a") as f:
        f.write("// changed\n")
    build_site.build(site, model, node_modules, tmp_path / "b")
    before, after = set(tree(tmp_path / "a")), set(tree(tmp_path / "b"))
    renamed = {Path(name).name.split(".")[0] for name in before - after if name.endswith(".mjs")}
    # sampling.mjs, llm.mjs (imports it) and chat.mjs (imports llm.mjs); the digits page keeps its names.
    assert renamed == {"sampling", "llm", "chat"}


def test_missing_inputs_and_bad_versions_fail(tmp_path: Path, inputs: tuple[Path, Path]) -> None:
    node_modules, model = inputs
    manifest = node_modules / "onnxruntime-web" / "package.json"
    manifest.write_text(json.dumps({"version": "latest"}))
    with pytest.raises(SystemExit, match="not a version"):
        build_site.build(WEBGPU_STATIC / "site", model, node_modules, tmp_path / "out")
    manifest.write_text(json.dumps({"version": "1.2.3"}))
    (node_modules / "onnxruntime-web" / "dist" / "ort.webgpu.min.mjs").unlink()
    with pytest.raises(SystemExit, match="missing inputs"):
        build_site.build(WEBGPU_STATIC / "site", model, node_modules, tmp_path / "out")


def test_an_import_of_an_unlisted_module_fails(tmp_path: Path, inputs: tuple[Path, Path]) -> None:
    node_modules, model = inputs
    site = tmp_path / "src"
    shutil.copytree(WEBGPU_STATIC / "site", site)
    with (site / "webgpu.mjs").open("a") as f:
        f.write("import { x } from './elsewhere.mjs';\n")
    with pytest.raises(SystemExit, match=r"webgpu\.mjs imports elsewhere\.mjs"):
        build_site.build(site, model, node_modules, tmp_path / "out")
