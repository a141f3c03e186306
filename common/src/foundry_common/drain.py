"""Stopping without cutting anyone off, when Docker, Swarm or systemd sends SIGTERM.

At the first signal a service with a Drain does not stop at once. It says it is stopping (its /healthz answers
503, so a load balancer such as the Swarm edge sends new sessions to other replicas), goes on with what is in
flight, and exits once `notice` seconds have passed and nothing has been in flight for `quiet` seconds, or after
`grace` seconds, whatever is left. A second signal stops it at once (foundry_common.server).

Trade-off: with a balancer, a stop takes at least `notice` seconds even when idle: long enough for the balancer to
see the failing health check, or it would still send sessions to a closed port. Without one (Compose, one
replica) `notice` is 0 and an idle service stops at once. `quiet` covers the gap between two pieces of one
session's work (a browser connects, then asks): a stop between them would cut the session before its question.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings

QUIET_SECONDS = 1.0


@dataclass
class Drain:
    notice: float
    grace: float
    quiet: float = QUIET_SECONDS
    clock: Callable[[], float] = time.monotonic
    in_flight: int = 0
    started_at: float | None = None
    last_activity: float = -math.inf

    @property
    def draining(self) -> bool:
        return self.started_at is not None

    def begin(self) -> None:
        if self.started_at is None:
            self.started_at = self.clock()

    @contextmanager
    def work(self) -> Iterator[None]:
        """Around one piece of work that a stop must let finish (an answer being streamed)."""
        self.in_flight += 1
        self.last_activity = self.clock()
        try:
            yield
        finally:
            self.in_flight -= 1
            self.last_activity = self.clock()

    def waited(self) -> float:
        return 0.0 if self.started_at is None else self.clock() - self.started_at

    def finished(self) -> bool:
        if self.started_at is None:
            return False
        now = self.clock()
        waited = now - self.started_at
        if waited >= self.grace:
            return True
        return waited >= self.notice and self.in_flight == 0 and now - self.last_activity >= self.quiet


class DrainSettings(BaseSettings):
    """A draining service's two settings: its settings class inherits them."""

    shutdown_notice_seconds: float = Field(
        0.0,
        ge=0,
        le=60,
        validation_alias="SHUTDOWN_NOTICE_SECONDS",
        description=(
            "how long a stopping service keeps serving while its `/healthz` says it is stopping, so that a load "
            "balancer sends new work to other replicas (the Swarm stack sets 5: its edge checks every 2 s); 0 where "
            "none watches"
        ),
    )
    shutdown_grace_seconds: float = Field(
        25.0,
        ge=0,
        le=600,
        validation_alias="SHUTDOWN_GRACE_SECONDS",
        description=(
            "the longest a stopping service waits for the answers in flight; keep it below the orchestrator's stop "
            "timeout (`stop_grace_period`: 30 s in compose.yaml and swarm/stack.yaml)"
        ),
    )

    def drain(self) -> Drain:
        return Drain(self.shutdown_notice_seconds, self.shutdown_grace_seconds)


class DrainRequests:
    """ASGI middleware: each HTTP request to one of `paths` is work a stop lets finish (a streamed answer: the app
    returns when its last byte is sent)."""

    def __init__(self, app: Any, drain: Drain, paths: frozenset[str]) -> None:
        self.app = app
        self.drain = drain
        self.paths = paths

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        with self.drain.work():
            await self.app(scope, receive, send)
