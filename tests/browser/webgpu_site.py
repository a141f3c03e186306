"""The WebGPU demo on this machine: its site built by webgpu-static/build-site, served by the real Debian nginx
with webgpu-static/nginx.conf (port, root and /tmp/ paths rewritten), and Debian's Chromium to look at it.
Shared by the browser tests and scripts/benchmarks/webgpu.py."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.process import REPO, free_port, wait_until

WEBGPU_STATIC = REPO / "webgpu-static"
SITE_CACHE = REPO / ".cache" / "webgpu-static"
NGINX_CONF = WEBGPU_STATIC / "nginx.conf"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WEBGPU_ARGS = ["--enable-unsafe-webgpu"]


def build_site() -> Path:
    """Build (or reuse, when its inputs are unchanged) the site; returns the folder nginx serves."""
    result = subprocess.run([str(WEBGPU_STATIC / "build-site")], capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        raise RuntimeError(f"webgpu-static/build-site failed:\n{result.stdout}\n{result.stderr}")
    return SITE_CACHE / "site"


# Where the local nginx forwards the router's routes when no router is given: a port nothing listens on (502).
NO_ROUTER = "127.0.0.1:9"


def render_nginx_conf(
    port: int, root: Path, prefix: Path, *, models: Path | None = None, router: str = NO_ROUTER
) -> str:
    """nginx.conf for a local run: 127.0.0.1:port, the given site root, runtime files under prefix, the chat's
    model folders from models (default: an empty folder under prefix), the router's routes sent to router."""
    # The config's runtime paths under /tmp/ first: the site root may itself be under /tmp (a clone there).
    text = re.sub(r"(?<=[ \t])/tmp/", f"{prefix}/", NGINX_CONF.read_text())
    replaced = {
        r"listen 8080;": f"listen 127.0.0.1:{port};",
        r"root /usr/share/nginx/html;": f"root {root};",
        r"alias /models/;": f"alias {models or prefix / 'models'}/;",
        r"set $router router:4000;": f"set $router {router};",
    }
    for old, new in replaced.items():
        if text.count(old) != 1:
            raise AssertionError(f"{NGINX_CONF} should contain {old!r} exactly once")
        text = text.replace(old, new)
    return text


@dataclass
class Nginx:
    url: str
    proc: subprocess.Popen
    prefix: Path

    def log(self) -> str:
        return (self.prefix / "nginx.out").read_text(errors="replace")


def nginx_test(conf: Path, prefix: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["nginx", "-t", "-p", str(prefix), "-c", str(conf), "-e", "stderr"], capture_output=True, text=True
    )


@contextmanager
def serve(root: Path, *, models: Path | None = None, router: str = NO_ROUTER) -> Iterator[Nginx]:
    """Run the real nginx on 127.0.0.1 in the foreground of a child process; stop it afterwards."""
    if shutil.which("nginx") is None:
        raise RuntimeError("nginx is missing: run scripts/install-prerequisites (Debian nginx-light)")
    with tempfile.TemporaryDirectory(prefix="webgpu-nginx-") as tmp:
        prefix = Path(tmp)
        port = free_port()
        conf = prefix / "nginx.conf"
        # Readable by nginx's workers, which run as nobody when the tests run as root.
        prefix.chmod(0o755)
        (prefix / "models").mkdir()
        conf.write_text(render_nginx_conf(port, root, prefix, models=models, router=router))
        out = (prefix / "nginx.out").open("wb")
        proc = subprocess.Popen(
            ["nginx", "-p", str(prefix), "-c", str(conf), "-e", "stderr", "-g", "daemon off;"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        out.close()
        server = Nginx(url=f"http://127.0.0.1:{port}", proc=proc, prefix=prefix)

        def up() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"nginx exited with {proc.returncode}:\n{server.log()}")
            try:
                return httpx.get(f"{server.url}/healthz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        try:
            wait_until(up, 20, "nginx to answer /healthz")
            yield server
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def launch_chromium(playwright, *, webgpu: bool):
    args = CHROMIUM_ARGS + (WEBGPU_ARGS if webgpu else [])
    return playwright.chromium.launch(executable_path=CHROMIUM, args=args, headless=True)


def launch_chromium_profile(playwright, user_data_dir: Path, *, webgpu: bool):
    """A browser with an on-disk profile: unlike a plain context (memory cache only, which keeps no
    multi-megabyte entries), its HTTP cache holds the WASM across reloads, as a person's browser does."""
    args = CHROMIUM_ARGS + (WEBGPU_ARGS if webgpu else [])
    return playwright.chromium.launch_persistent_context(
        str(user_data_dir), executable_path=CHROMIUM, args=args, headless=True
    )
