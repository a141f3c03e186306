"""The WebGPU demo's build and nginx configuration, checked against the real Debian nginx on 127.0.0.1."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.browser.webgpu_site import NGINX_CONF, WEBGPU_STATIC, Nginx, nginx_test, render_nginx_conf
from tests.support.process import REPO

pytestmark = pytest.mark.integration

IMMUTABLE = "public, max-age=31536000, immutable"


def one(site: Path, pattern: str) -> str:
    (path,) = site.glob(pattern)
    return "/" + path.relative_to(site).as_posix()


def csp_directives(value: str) -> dict[str, list[str]]:
    directives = {}
    for part in value.split(";"):
        name, *sources = part.split()
        directives[name] = sources
    return directives


def check_security_headers(response: httpx.Response) -> None:
    assert response.headers["cross-origin-opener-policy"] == "same-origin"
    assert response.headers["cross-origin-embedder-policy"] == "require-corp"
    assert response.headers["x-content-type-options"] == "nosniff"
    csp = csp_directives(response.headers["content-security-policy"])
    assert csp["default-src"] == ["'none'"]
    assert csp["script-src"] == ["'self'", "'wasm-unsafe-eval'"]
    for sources in csp.values():
        for source in sources:
            # Only this origin (or nothing): no host, scheme, wildcard, inline or eval source anywhere.
            assert source in {"'self'", "'none'", "'wasm-unsafe-eval'"}, source
    assert "server" not in response.headers or "/" not in response.headers["server"]


def test_nginx_config_is_clean(tmp_path: Path, webgpu_site: Path) -> None:
    conf = tmp_path / "nginx.conf"
    conf.write_text(render_nginx_conf(8080, webgpu_site, tmp_path))
    result = nginx_test(conf, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "syntax is ok" in result.stderr and "test is successful" in result.stderr
    assert "[warn]" not in result.stderr and "[emerg]" not in result.stderr
    # The shipped file runs unprivileged: port 8080, everything writable under /tmp only.
    text = NGINX_CONF.read_text()
    assert re.search(r"^\s*listen 8080;", text, re.M)
    assert "user " not in re.sub(r"#.*", "", text)
    paths = re.findall(r"(?:pid|_temp_path)\s+(\S+);", text)
    assert paths and all(p.startswith("/tmp/") for p in paths)  # noqa: S108 (paths inside the container)


def test_page_headers(webgpu_server: Nginx) -> None:
    response = httpx.get(webgpu_server.url + "/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["cache-control"] == "no-cache"
    check_security_headers(response)
    assert "http://" not in response.text and "https://" not in response.text


def test_asset_types_compression_and_caching(webgpu_server: Nginx, webgpu_site: Path) -> None:
    expected = {
        one(webgpu_site, "vendor/onnxruntime-web-*/ort.webgpu.min.mjs"): "text/javascript; charset=utf-8",
        one(
            webgpu_site, "vendor/onnxruntime-web-*/ort-wasm-simd-threaded.asyncify.mjs"
        ): "text/javascript; charset=utf-8",
        one(webgpu_site, "vendor/onnxruntime-web-*/ort-wasm-simd-threaded.asyncify.wasm"): "application/wasm",
        one(webgpu_site, "assets/app.*.mjs"): "text/javascript; charset=utf-8",
        one(webgpu_site, "assets/style.*.css"): "text/css; charset=utf-8",
        one(webgpu_site, "model/digits.*.onnx"): "application/octet-stream",
        one(webgpu_site, "model/samples.*.json"): "application/json; charset=utf-8",
    }
    with httpx.Client(base_url=webgpu_server.url, headers={"Accept-Encoding": "gzip"}) as client:
        for path, content_type in expected.items():
            response = client.get(path)
            assert response.status_code == 200, path
            assert response.headers["content-type"] == content_type, path
            assert response.headers["cache-control"] == IMMUTABLE, path
            assert response.headers["vary"] == "Accept-Encoding", path
            check_security_headers(response)
            # Served from the precompressed twin: the bytes on the wire are the .gz file's.
            assert response.headers["content-encoding"] == "gzip", path
            gz = webgpu_site / (path.lstrip("/") + ".gz")
            assert int(response.headers["content-length"]) == gz.stat().st_size, path
            assert response.content == (webgpu_site / path.lstrip("/")).read_bytes(), path
    # A client that does not accept gzip gets the plain file.
    wasm = next(p for p, t in expected.items() if t == "application/wasm")
    plain = httpx.get(webgpu_server.url + wasm, headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers
    assert int(plain.headers["content-length"]) == (webgpu_site / wasm.lstrip("/")).stat().st_size


def test_health_and_not_found(webgpu_server: Nginx) -> None:
    health = httpx.get(webgpu_server.url + "/healthz")
    assert (health.status_code, health.text, health.headers["cache-control"]) == (200, "ok\n", "no-store")
    for path in ("/.build-hash", "/nope.js", "/vendor/"):
        response = httpx.get(webgpu_server.url + path)
        assert response.status_code in {403, 404}, path
        check_security_headers(response)


def test_only_the_webgpu_build_of_onnxruntime_is_shipped(webgpu_site: Path) -> None:
    (vendor,) = (webgpu_site / "vendor").iterdir()
    lock = json.loads((WEBGPU_STATIC / "package-lock.json").read_text())
    version = lock["packages"]["node_modules/onnxruntime-web"]["version"]
    assert vendor.name == f"onnxruntime-web-{version}"
    assert sorted(p.name for p in vendor.iterdir() if p.suffix != ".gz") == [
        "ort-wasm-simd-threaded.asyncify.mjs",
        "ort-wasm-simd-threaded.asyncify.wasm",
        "ort.webgpu.min.mjs",
    ]
    # No registry addresses in the lock file (npm's omit-lockfile-registry-resolved) and an exact pin.
    assert "resolved" not in (WEBGPU_STATIC / "package-lock.json").read_text()
    assert json.loads((WEBGPU_STATIC / "package.json").read_text())["dependencies"]["onnxruntime-web"] == version
    # Nothing of ours on the site names another origin (the SVG's XML namespace is a name, not a request).
    for path in webgpu_site.rglob("*"):
        if path.suffix in {".html", ".css", ".json"} or re.fullmatch(r"app\.\w+\.mjs", path.name):
            assert not re.search(r"https?://", path.read_text()), path


def test_the_model_build_is_deterministic_and_accurate(tmp_path: Path, webgpu_site: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(WEBGPU_STATIC / "model" / "build_model.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
    )
    accuracy = float(re.search(r"test accuracy (\d\.\d+)", result.stdout).group(1))
    assert accuracy >= 0.95
    meta = json.loads((tmp_path / "model.json").read_text())
    assert meta["test_accuracy"] >= 0.95
    assert meta["operators"] == ["Add", "MatMul", "Relu", "Softmax"]
    # Byte-identical to the model the site serves (built separately by webgpu-static/build-site).
    cached = REPO / ".cache" / "webgpu-static" / "model"
    for name in ("digits.onnx", "samples.json", "model.json"):
        digest = hashlib.sha256((tmp_path / name).read_bytes()).hexdigest()
        assert digest == hashlib.sha256((cached / name).read_bytes()).hexdigest(), name
