"""The paced upstream (paced_upstream.py) as a local process: a fixed-rate OpenAI server for tests and benchmarks."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.support.paced_upstream import PACED_MODEL
from tests.support.process import free_port, wait_until

__all__ = ["PACED_MODEL", "PacedUpstream", "start_paced_upstream"]


@dataclass
class PacedUpstream:
    proc: subprocess.Popen
    url: str  # the OpenAI base URL (…/v1)

    def stats(self) -> dict:
        return httpx.get(f"{self.url.removesuffix('/v1')}/stats", timeout=5).json()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def start_paced_upstream(
    first_token_ms: float = 20,
    token_interval_ms: float = 10,
    fail_status: int = 0,
    break_after: int = 0,
    break_mid_event: bool = False,
    downloading: float | None = None,
    port: int | None = None,
    flags: tuple[str, ...] = (),
    capacity_tokens_per_second: float = 0.0,
) -> PacedUpstream:
    """Start it and wait until it answers; `port` restarts one on the address it had; `flags` are paced_upstream.py's
    other options as on its command line (--completions, --model ID, --refuse-field NAME …);
    `capacity_tokens_per_second` makes its streams share that throughput, like a CPU runtime's (0: they do not)."""
    port = port or free_port()
    args = [
        sys.executable, str(Path(__file__).with_name("paced_upstream.py")), str(port),
        "--first-token-ms", str(first_token_ms), "--token-interval-ms", str(token_interval_ms),
        "--fail-status", str(fail_status), "--break-after", str(break_after),
    ]  # fmt: skip
    if downloading is not None:
        args += ["--downloading", str(downloading)]
    if break_mid_event:
        args.append("--break-mid-event")
    if capacity_tokens_per_second:
        args += ["--capacity-tokens-per-second", str(capacity_tokens_per_second)]
    args += flags
    upstream = PacedUpstream(subprocess.Popen(args), f"http://127.0.0.1:{port}/v1")

    def up() -> bool:
        if upstream.proc.poll() is not None:
            raise RuntimeError(f"the paced upstream exited with {upstream.proc.returncode}")
        try:
            return httpx.get(f"{upstream.url}/models", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(up, 30, "the paced upstream")
    return upstream
