"""Start real processes for tests and wait for them by polling a condition (never a fixed sleep)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.logs import register

REPO = Path(__file__).resolve().parents[2]


# The real model's folder name gives the id the embedded service registers it under (`<folder>-generic-cpu:1`).
CHAT_MODEL_NAME = "smollm2-135m-instruct"
CHAT_MODEL_ID = f"{CHAT_MODEL_NAME}-generic-cpu:1"


def chat_model_dir() -> Path:
    """Where scripts/make-model puts SmolLM2-135M-Instruct (OFFLINE_MODEL_DIR overrides, as for the script)."""
    return Path(os.environ.get("OFFLINE_MODEL_DIR", REPO / ".cache" / "models" / CHAT_MODEL_NAME))


def tiny_model_dir() -> Path:
    """Where `scripts/make-model --tiny` puts the random tiny model (TINY_MODEL_DIR overrides, as for the script)."""
    return Path(os.environ.get("TINY_MODEL_DIR", REPO / ".cache" / "tiny-model"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def metric_sum(metrics_text: str, name: str, **labels: str) -> float:
    """Sum of the samples of metric `name` whose labels include `labels`, in Prometheus text (0 when absent)."""
    total = 0.0
    for line in metrics_text.splitlines():
        if not line.startswith((name + "{", name + " ")):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def wait_until(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.05) -> None:
    """Poll `condition` until it holds; fail with `what` when `timeout` seconds pass first."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def log_events(path: Path) -> list[dict]:
    """The JSON lines of a structlog log file (the runtime's own native lines are skipped)."""
    events = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                events.append(json.loads(line))
            except ValueError:
                continue
    return events


def terminate(proc: subprocess.Popen, timeout: float = 15) -> int:
    """SIGTERM, as Docker and systemd stop a service; SIGKILL only if it does not stop in time."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


@dataclass
class GatewayProcess:
    """The embedded Foundry Local service (`python -m foundry_embedded`) as a local process."""

    proc: subprocess.Popen
    url: str
    log_path: Path

    def __post_init__(self) -> None:
        register(self)

    @property
    def runtime_url(self) -> str:
        """The runtime's own loopback web service, which only the gateway should use."""
        return next(e["url"] for e in log_events(self.log_path) if e.get("event") == "runtime_started")

    def healthz(self) -> httpx.Response:
        """Liveness: 200 while the service runs; the body says its model's state."""
        return httpx.get(f"{self.url}/healthz", timeout=5)

    def readyz(self) -> httpx.Response:
        """Readiness: 200 once its model is served, 503 before, with the same body as /healthz."""
        return httpx.get(f"{self.url}/readyz", timeout=5)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_state(self, states: set[str], timeout: float = 60) -> dict:
        body: dict = {}

        def reached() -> bool:
            nonlocal body
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.proc.returncode}:\n{self.log()}")
            try:
                body = self.healthz().json()
            except httpx.HTTPError:
                return False
            return body.get("state") in states

        wait_until(reached, timeout, f"gateway state in {states}")
        return body

    def wait_part_way(self, timeout: float = 60) -> dict:
        """The /healthz body once its model's download is under way with part of it in (0 < percent < 100)."""

        def part_way(body: dict) -> bool:
            return body.get("state") == "downloading" and 0 < (body.get("download") or {}).get("percent", 0) < 100

        body: dict = {}

        def reached() -> bool:
            nonlocal body
            body = self.wait_for_state({"downloading"}, timeout)
            return part_way(body)

        wait_until(reached, timeout, "the model's download part-way")
        return body

    def stop(self, timeout: float = 15) -> int:
        return terminate(self.proc, timeout)


def start_gateway(data_dir: Path, log_path: Path, port: int | None = None, **env: str) -> GatewayProcess:
    """`python -m foundry_embedded` on `port` (a free one by default) with `env` over this process's."""
    port = port or free_port()
    full_env = {
        **os.environ,
        "PORT": str(port),
        "GATEWAY_HOST": "127.0.0.1",
        "FOUNDRY_DATA_DIR": str(data_dir),
        "LOG_FORMAT": "json",
        **env,
    }
    log_file = log_path.open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "foundry_embedded"], env=full_env, stdout=log_file, stderr=subprocess.STDOUT
    )
    log_file.close()
    return GatewayProcess(proc=proc, url=f"http://127.0.0.1:{port}", log_path=log_path)


@contextmanager
def ready_gateway(tmp: Path, port: int | None = None, **env: str) -> Iterator[GatewayProcess]:
    """The embedded service as a process, its data and log under `tmp`, ready to serve; stopped at the end."""
    service = start_gateway(tmp / "data", tmp / "gateway.log", port, **env)
    try:
        service.wait_for_state({"ready"})
        yield service
    finally:
        service.stop()
