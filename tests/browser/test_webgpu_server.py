"""The WebGPU demo's build and nginx configuration, checked against the real Debian nginx on 127.0.0.1."""

from __future__ import annotations

import hashlib
import http.server
import json
import re
import subprocess
import sys
import threading
import typing
from pathlib import Path

import httpx
import pytest

from tests.browser.webgpu_site import NGINX_CONF, WEBGPU_STATIC, Nginx, nginx_test, render_nginx_conf, serve
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


def test_only_the_npm_files_the_pages_load_are_shipped(webgpu_site: Path) -> None:
    lock = json.loads((WEBGPU_STATIC / "package-lock.json").read_text())
    version = {
        name: lock["packages"][f"node_modules/{name}"]["version"] for name in lock["packages"][""]["dependencies"]
    }
    shipped = {
        folder.name: sorted(p.name for p in folder.iterdir() if p.suffix != ".gz")
        for folder in (webgpu_site / "vendor").iterdir()
    }
    assert shipped == {
        f"onnxruntime-web-{version['onnxruntime-web']}": [
            "ort-wasm-simd-threaded.asyncify.mjs",
            "ort-wasm-simd-threaded.asyncify.wasm",
            "ort.webgpu.min.mjs",
        ],
        f"huggingface-tokenizers-{version['@huggingface/tokenizers']}": ["tokenizers.min.mjs"],
        f"huggingface-jinja-{version['@huggingface/jinja']}": ["index.js"],
    }
    # No registry addresses in the lock file (npm's omit-lockfile-registry-resolved) and an exact pin.
    assert "resolved" not in (WEBGPU_STATIC / "package-lock.json").read_text()
    assert json.loads((WEBGPU_STATIC / "package.json").read_text())["dependencies"] == version
    # Nothing of ours on the site names another origin (the SVG's XML namespace is a name, not a request).
    for path in webgpu_site.rglob("*"):
        if path.suffix in {".html", ".css", ".json"} or (path.parent.name == "assets" and path.suffix == ".mjs"):
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


def test_chat_page_headers(webgpu_server: Nginx) -> None:
    for path in ("/chat", "/chat.html"):
        response = httpx.get(webgpu_server.url + path)
        assert response.status_code == 200, path
        assert response.headers["content-type"] == "text/html; charset=utf-8"
        assert response.headers["cache-control"] == "no-cache"
        assert 'id="prompt"' in response.text
        check_security_headers(response)


def test_model_folders_are_listed_as_json_and_served_as_files(webgpu_server: Nginx, chat_models: Path) -> None:
    with httpx.Client(base_url=webgpu_server.url) as client:
        folders = client.get("/models/")
        assert folders.headers["content-type"] == "application/json; charset=utf-8"
        assert {"name": "tiny-chat", "type": "directory"}.items() <= next(
            entry for entry in folders.json() if entry["name"] == "tiny-chat"
        ).items()
        listing = {entry["name"]: entry for entry in client.get("/models/tiny-chat/").json()}
        on_disk = {p.name: p for p in (chat_models / "tiny-chat").iterdir() if not p.name.startswith(".")}
        # Dotfiles (the build stamp) are neither listed nor served.
        assert set(listing) == set(on_disk)
        assert client.get("/models/tiny-chat/.build-hash").status_code == 404
        types = {"model.onnx.data": "application/octet-stream", "genai_config.json": "application/json"}
        for name, content_type in types.items():
            response = client.get(f"/models/tiny-chat/{name}")
            assert response.status_code == 200, name
            assert response.headers["content-type"].split(";")[0] == content_type, name
            # Revalidated: the page keeps its own copy (Cache Storage), keyed on the listing.
            assert response.headers["cache-control"] == "no-cache", name
            check_security_headers(response)
            assert response.content == on_disk[name].read_bytes()
            assert listing[name]["size"] == on_disk[name].stat().st_size
        assert client.get("/models/absent/").status_code == 404


class RecordingRouter(http.server.BaseHTTPRequestHandler):
    """Where nginx forwards the router's routes in this tier: it records what arrives and answers 200. The real
    router behind the real site is in the e2e tier (tests/e2e/test_stack.py)."""

    seen: typing.ClassVar[list[tuple[str, str, str]]] = []

    def answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self.seen.append((self.command, self.path, self.headers.get("Authorization", "")))
        body = b'{"object": "list", "data": []}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = answer

    def log_message(self, *args: object) -> None:
        pass


def test_only_the_routers_client_routes_are_forwarded(webgpu_site: Path, webgpu_server: Nginx) -> None:
    # Without a router behind it, the site still serves and the forwarded routes say 502.
    assert httpx.get(webgpu_server.url + "/v1/models").status_code == 502
    router = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RecordingRouter)
    threading.Thread(target=router.serve_forever, daemon=True).start()
    try:
        with serve(webgpu_site, router=f"127.0.0.1:{router.server_port}") as server:
            key = {"Authorization": "Bearer from-the-page"}
            assert httpx.get(server.url + "/v1/models", headers=key).status_code == 200
            assert httpx.post(server.url + "/v1/chat/completions", json={"model": "m"}).status_code == 200
            for path in ("/v1/embeddings", "/v1/completions", "/metrics", "/readyz", "/v1/models/x"):
                assert httpx.get(server.url + path).status_code == 404, path
    finally:
        router.shutdown()
    # The page's key is passed on as it came; nginx adds none.
    assert RecordingRouter.seen == [
        ("GET", "/v1/models", "Bearer from-the-page"),
        ("POST", "/v1/chat/completions", ""),
    ]
