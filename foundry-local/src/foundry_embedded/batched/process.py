"""The batched engine as a child process of the gateway (FOUNDRY_ENGINE=batched): started on a free loopback port
once Foundry Local has the model folder, waited for, stopped with the gateway.

A process rather than a thread of the gateway: its decode steps hold the GIL for the Python between ONNX Runtime
calls, and the gateway's event loop must stay responsive; a crash of the engine also stays out of the gateway, whose
requests then get its 502 (runtime_unreachable) like a runtime that stopped answering.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

MAX_ROWS = 8  # rows decoding together: past 4-8 the aggregate tokens/s of a 2-core CPU stops growing (measured)
# ONNX Runtime's intra-op threads. One: MatMulNBits' many-row kernel (the only one this engine runs, slots.py) gained
# nothing from a second thread on 2 cores (12 ms a step at 2 rows, 40 ms at 8, either way), and with the CPU shared
# (the gateway, other services) two spinning threads halved the tokens/s (66-71 against 108-132 at 8 streams).
THREADS = 1


class EngineFailed(Exception):
    pass


class BatchedEngine:
    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self.url: str | None = None

    def start(self, folder: Path, model_id: str, cancel: threading.Event, timeout: float = 300.0) -> str:
        """Start it on `folder`; its base URL once its /healthz answers (EngineFailed if it exits or times out)."""
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        command = [sys.executable, "-m", "foundry_embedded.batched", str(folder), model_id, str(port), str(MAX_ROWS),
                   str(THREADS)]  # fmt: skip
        self.proc = subprocess.Popen(command)  # its log lines go to the gateway's own output
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + timeout
        while not cancel.is_set() and time.monotonic() < deadline:
            if (code := self.proc.poll()) is not None:
                raise EngineFailed(f"the batched engine exited ({code}) while loading {folder}: see the log above")
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=2):  # noqa: S310 - our own loopback child
                    self.url = url
                    return url
            except (urllib.error.URLError, OSError):
                cancel.wait(0.2)  # polling the child's readiness, not synchronising tests
        self.stop()  # stopping (or too slow): no child outlives the gateway
        raise EngineFailed(f"the batched engine did not answer within {timeout:.0f} s")

    def stop(self, timeout: float = 3.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout)
