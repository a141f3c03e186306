"""The chat service (`python -m foundry_chat`) as a real local process."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.process import free_port, metric_sum, terminate, wait_until


@dataclass
class ChatProcess:
    proc: subprocess.Popen
    url: str
    log_path: Path

    def get(self, path: str) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", timeout=5)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_healthy(self, timeout: float = 60) -> None:
        def healthy() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"chat service exited with {self.proc.returncode}:\n{self.log()[-5000:]}")
            try:
                return self.get("/healthz").status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(healthy, timeout, "the chat service's /healthz")

    def readyz_status(self) -> int:
        return self.get("/readyz").status_code

    def metric(self, name: str) -> float:
        """Sum of a metric's samples over all labels (0 when absent)."""
        return metric_sum(self.get("/metrics").text, name)

    def stop(self, timeout: float = 15) -> int:
        return terminate(self.proc, timeout)


def start_chat(tmp: Path, upstream_urls: list[str], **env: str) -> ChatProcess:
    port = free_port()
    full_env = {
        **os.environ,
        "CHAT_HOST": "127.0.0.1",
        "CHAT_PORT": str(port),
        "CHAINLIT_APP_ROOT": str(tmp / "chainlit"),
        "FOUNDRY_LOCAL_URLS": ",".join(upstream_urls),
        "PROBE_INTERVAL_SECONDS": "2",
        "PROBE_MAX_BACKOFF_SECONDS": "2",
        "LOG_FORMAT": "json",
        "MAX_TOKENS": "32",
        **env,
    }
    log_path = tmp / "chat.log"
    with log_path.open("ab") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "foundry_chat"], env=full_env, stdout=log_file, stderr=subprocess.STDOUT
        )
    return ChatProcess(proc=proc, url=f"http://127.0.0.1:{port}", log_path=log_path)
