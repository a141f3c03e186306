"""Chat sessions started in a loop through the Swarm stack's edge, as arriving browsers would: connect, ask, check
the answer, close. Used by tests/swarm/test_scale.py and scripts/benchmarks/swarm.py."""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from dataclasses import dataclass, field

from chat_support import connected, login

from tests.e2e.stack import SWARM_MODEL
from tests.support.swarm import SwarmStack


@dataclass
class Load:
    """Sessions started in a loop by `workers` tasks until `stop`; each one's outcome, time and TTFT. With `think`
    seconds, each worker pauses that long between its sessions (a person reading the answer), so the load is a
    pace rather than as fast as the machine answers."""

    url: str
    cookies: dict[str, str]
    think: float = 0.0
    stop: threading.Event = field(default_factory=threading.Event)
    done: list[tuple[float, float]] = field(default_factory=list)  # (finished at, TTFT)
    failures: list[str] = field(default_factory=list)

    async def one_session(self, tag: str) -> None:
        try:
            async with connected(self.url, cookies=self.cookies) as client:
                reply = await client.ask(f"{tag}: hello")
        except Exception as exc:  # a refused or broken connection is a failed session
            self.failures.append(f"{tag}: {exc!r}")
            return
        if reply.answered_in_full_by(SWARM_MODEL):
            self.done.append((time.monotonic(), reply.ttft()))
        else:
            self.failures.append(f"{tag}: {reply.final_text()!r}")

    async def worker(self, number: int) -> None:
        turn = 0
        while not self.stop.is_set():
            await self.one_session(f"worker {number} session {turn}")
            turn += 1
            if self.think:
                await asyncio.sleep(self.think)

    def run(self, workers: int) -> threading.Thread:
        thread = threading.Thread(target=lambda: asyncio.run(self._all(workers)), name="swarm-load", daemon=True)
        thread.start()
        return thread

    async def _all(self, workers: int) -> None:
        await asyncio.gather(*(self.worker(n) for n in range(workers)))

    def wait_sessions(self, count: int, timeout: float = 300) -> None:
        """Until `count` more sessions have finished (or the load failed)."""
        target = len(self.done) + count
        deadline = time.monotonic() + timeout
        while len(self.done) < target and not self.failures:
            assert time.monotonic() < deadline, f"only {len(self.done)} of {target} sessions in {timeout}s"
            time.sleep(0.2)

    def ttfts_between(self, start: float, end: float) -> list[float]:
        return [ttft for finished, ttft in self.done if start <= finished < end]


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1] if len(values) > 1 else values[0]


def load_on(swarm: SwarmStack, think: float = 0.0) -> Load:
    """Sessions of many browsers logged in as the admin: each sends the login's token, and none the edge's replica
    cookie of the login's response (a browser sends it back, so each would stick to that one replica)."""
    token = login(swarm.url("chat-app"), "admin", swarm.secret("admin_password")).cookies["access_token"]
    return Load(swarm.url("chat-app"), {"access_token": token}, think=think)
