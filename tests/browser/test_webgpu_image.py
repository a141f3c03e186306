"""The WebGPU demo's offline image (webgpu-static/Dockerfile.offline): builds with no registry, serves the site
with the right headers as a non-root user on port 8080."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.support.docker import docker, health, inspect, published_port, require_docker
from tests.support.process import REPO, wait_until

pytestmark = pytest.mark.e2e

TAG = "foundry-stack/webgpu-static:test"
ORT_VERSION = json.loads((REPO / "webgpu-static" / "package-lock.json").read_text())["packages"][
    "node_modules/onnxruntime-web"
]["version"]


@pytest.fixture(scope="module")
def container() -> Iterator[str]:
    require_docker()
    context = REPO / "webgpu-static"
    docker("build", "--tag", TAG, "--file", str(context / "Dockerfile.offline"), str(context), timeout=1800)
    name = f"webgpu-static-test-{uuid.uuid4().hex[:8]}"
    docker("run", "--detach", "--name", name, "--publish", "127.0.0.1::8080", "--read-only", "--tmpfs", "/tmp", TAG)  # noqa: S108 (the container's own tmpfs)
    try:
        yield name
    finally:
        docker("rm", "--force", name, check=False)


def test_the_image_serves_the_site_as_non_root(container: str) -> None:
    url = f"http://127.0.0.1:{published_port(container, 8080)}"

    def healthy() -> bool:
        try:
            return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(healthy, 30, "the webgpu-static container to answer /healthz")
    # The image's own HEALTHCHECK (bash /dev/tcp, no curl in the image) turns healthy too.
    wait_until(lambda: health(container) == "healthy", 60, "the container's HEALTHCHECK to pass", interval=0.5)
    user = inspect(container)["Config"]["User"]
    assert user and user.split(":")[0] not in {"0", "root"}
    assert docker("exec", container, "id", "-u").stdout.strip() != "0"
    # nginx's master process (PID 1) runs as that user, not as root; its configuration tests clean.
    status = docker("exec", container, "cat", "/proc/1/status").stdout
    uids = next(line.split()[1:] for line in status.splitlines() if line.startswith("Uid:"))
    assert "0" not in uids, status
    assert "test is successful" in docker("exec", container, "nginx", "-t").stderr

    page = httpx.get(url + "/", headers={"Accept-Encoding": "gzip"})
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.headers["cache-control"] == "no-cache"
    assert page.headers["cross-origin-opener-policy"] == "same-origin"
    assert page.headers["cross-origin-embedder-policy"] == "require-corp"
    assert page.headers["content-security-policy"].startswith(
        "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'"
    )
    vendor = f"/vendor/onnxruntime-web-{ORT_VERSION}"
    wasm = f"{vendor}/ort-wasm-simd-threaded.asyncify.wasm"
    response = httpx.get(url + wasm, headers={"Accept-Encoding": "gzip"})
    assert response.headers["content-type"] == "application/wasm"
    assert response.headers["content-encoding"] == "gzip"
    assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
    module = httpx.head(f"{url}{vendor}/ort.webgpu.min.mjs")
    assert module.headers["content-type"] == "text/javascript; charset=utf-8"
