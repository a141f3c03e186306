"""The router (`python -m foundry_router`) as a real local process."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.logs import register
from tests.support.process import free_port, metric_sum, terminate, wait_until


@dataclass
class RouterProcess:
    proc: subprocess.Popen
    url: str  # without /v1
    log_path: Path

    def __post_init__(self) -> None:
        register(self)

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def get(self, path: str) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", timeout=5)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def readyz(self) -> dict:
        return self.get("/readyz").json()

    def wait_healthy(self, timeout: float = 30) -> None:
        def healthy() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the router exited with {self.proc.returncode}:\n{self.log()[-5000:]}")
            try:
                return self.get("/healthz").status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(healthy, timeout, "the router's /healthz")

    def wait_ready(self, timeout: float = 30, model: str | None = None) -> None:
        """/readyz is 200 (with `model` loaded somewhere, when one is named)."""
        self.wait_healthy(timeout)

        def ready() -> bool:
            response = self.get("/readyz")
            return response.status_code == 200 and (model is None or model in response.json()["models"])

        wait_until(ready, timeout, f"the router ready with {model or 'a model'}")

    def metric(self, name: str, **labels: str) -> float:
        return metric_sum(self.get("/metrics").text, name, **labels)

    def stop(self, timeout: float = 15) -> int:
        return terminate(self.proc, timeout)


def start_router(tmp: Path, upstream_urls: list[str], **env: str) -> RouterProcess:
    """Start it in front of `upstream_urls` (probed every second, so tests see changes quickly)."""
    port = free_port()
    full_env = {
        **os.environ,
        "ROUTER_HOST": "127.0.0.1",
        "ROUTER_PORT": str(port),
        "FOUNDRY_LOCAL_URLS": ",".join(upstream_urls),
        "PROBE_INTERVAL_SECONDS": "1",
        "PROBE_MAX_BACKOFF_SECONDS": "1",
        "LOG_FORMAT": "json",
        **env,
    }
    tmp.mkdir(parents=True, exist_ok=True)
    log_path = tmp / "router.log"
    with log_path.open("ab") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "foundry_router"], env=full_env, stdout=log_file, stderr=subprocess.STDOUT
        )
    return RouterProcess(proc=proc, url=f"http://127.0.0.1:{port}", log_path=log_path)
