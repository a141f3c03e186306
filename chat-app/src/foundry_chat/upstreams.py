"""The upstreams: what each one is, its state, and the background probing that keeps that state fresh.

A healthy upstream is re-probed every PROBE_INTERVAL_SECONDS; a failed one with a backoff that doubles up
to PROBE_MAX_BACKOFF_SECONDS, so that a restarted Foundry Local is back in use within seconds, without a
restart of this service. A request that fails marks its upstream down and wakes the prober at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

import httpx
import structlog

from foundry_chat.probe import ProbeError, ProbeResult, Shape, probe

log = structlog.get_logger("foundry_chat.upstreams")

State = Literal["unknown", "up", "down"]
FIRST_BACKOFF_SECONDS = 0.5


@dataclass(frozen=True)
class Upstream:
    name: str  # host:port, what people see as "where it ran"
    base_url: str
    api_key: str
    cloud: bool = False
    # The cloud upstream serves this model whether or not it lists it.
    fixed_model: str | None = None

    @property
    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.api_key}"}

    @property
    def provider(self) -> str:
        # gen_ai.provider.name: every local shape is Foundry Local; the cloud speaks the OpenAI API.
        return "openai" if self.cloud else "foundry_local"


def upstream_name(url: str) -> str:
    parts = urlsplit(url)
    return parts.netloc or url


@dataclass
class UpstreamStatus:
    upstream: Upstream
    state: State = "unknown"
    shape: Shape | None = None
    models: tuple[str, ...] = ()
    error: str = ""
    service_state: str = ""  # the embedded service's own state (downloading, loading, ready...)
    service_message: str = ""
    download_percent: float | None = None
    failures: int = 0
    next_probe_at: float = 0.0
    checked_at: float | None = None

    @property
    def serving(self) -> bool:
        return self.state == "up" and bool(self.models or self.upstream.fixed_model)

    def serves(self, model: str) -> bool:
        return self.state == "up" and (model in self.models or model == self.upstream.fixed_model)

    def as_dict(self) -> dict:
        body = {
            "name": self.upstream.name,
            "url": self.upstream.base_url,
            "cloud": self.upstream.cloud,
            "state": self.state,
            "shape": self.shape,
            "models": list(self.models) or ([self.upstream.fixed_model] if self.upstream.fixed_model else []),
        }
        if self.error:
            body["error"] = self.error
        if self.service_state:
            body["service_state"] = self.service_state
            body["service_message"] = self.service_message
        if self.download_percent is not None:
            body["download_percent"] = self.download_percent
        return body


@dataclass
class Registry:
    """Every upstream's status, in the configured order; probed by one background task."""

    statuses: list[UpstreamStatus]
    client: httpx.AsyncClient
    interval: float
    max_backoff: float
    on_change: Callable[[UpstreamStatus], None] = lambda status: None
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task | None = None

    @property
    def local(self) -> list[UpstreamStatus]:
        return [s for s in self.statuses if not s.upstream.cloud]

    @property
    def cloud(self) -> UpstreamStatus | None:
        return next((s for s in self.statuses if s.upstream.cloud), None)

    @property
    def ready(self) -> bool:
        return any(s.serving for s in self.statuses)

    def models(self) -> list[str]:
        """Loaded models of the upstreams that are up, local first, in upstream order, without duplicates."""
        found: dict[str, None] = {}
        for status in self.local:
            if status.state == "up":
                found.update(dict.fromkeys(status.models))
        cloud = self.cloud
        if cloud is not None and cloud.serving and cloud.upstream.fixed_model:
            found[cloud.upstream.fixed_model] = None
        return list(found)

    def downloading(self) -> UpstreamStatus | None:
        """An embedded service that is still fetching or loading its model, if any (for the banner)."""
        return next((s for s in self.local if s.service_state in {"starting", "downloading", "loading"}), None)

    def snapshot(self) -> list[dict]:
        return [s.as_dict() for s in self.statuses]

    async def probe_all(self) -> None:
        await asyncio.gather(*(self.probe_one(s) for s in self.statuses))

    async def probe_one(self, status: UpstreamStatus) -> None:
        before = (status.state, status.models, status.service_state)
        try:
            result = await probe(self.client, status.upstream.base_url, status.upstream.headers, status.shape)
        except ProbeError as exc:
            self._failed(status, str(exc))
        else:
            self._succeeded(status, result)
        status.checked_at = time.monotonic()
        if (status.state, status.models, status.service_state) != before:
            log.info(
                "upstream_state",
                upstream=status.upstream.name,
                state=status.state,
                shape=status.shape,
                models=list(status.models),
                error=status.error or None,
                service_state=status.service_state or None,
            )
            self.on_change(status)

    def _succeeded(self, status: UpstreamStatus, result: ProbeResult) -> None:
        status.shape, status.models, status.error = result.shape, result.models, ""
        status.service_state = result.state if result.shape == "foundry-embedded" else ""
        status.service_message = result.message
        status.download_percent = result.download_percent
        if result.state == "ready":
            status.state, status.failures = "up", 0
            status.next_probe_at = time.monotonic() + self.interval
        else:
            # Reachable but without a model yet: watch it closely so that it is used as soon as it is ready.
            status.state = "down"
            status.error = result.message or f"the service is {result.state}"
            status.next_probe_at = time.monotonic() + min(1.0, self.max_backoff)

    def _failed(self, status: UpstreamStatus, error: str) -> None:
        status.state, status.error, status.models = "down", error, ()
        status.service_state, status.download_percent = "", None
        # Forget the shape: whatever comes back on that address may be a different server.
        status.shape = None
        status.failures += 1
        backoff = min(self.max_backoff, FIRST_BACKOFF_SECONDS * 2 ** (status.failures - 1))
        status.next_probe_at = time.monotonic() + backoff

    def mark_failed(self, upstream: Upstream, error: str) -> None:
        """A request to this upstream failed: stop routing to it and let the prober find out when it is back."""
        status = self.status_of(upstream)
        if status.state != "down":
            log.warning("upstream_marked_down", upstream=upstream.name, error=error)
            self._failed(status, error)
            self.on_change(status)
        self._wake.set()

    def status_of(self, upstream: Upstream) -> UpstreamStatus:
        return next(s for s in self.statuses if s.upstream == upstream)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="probe-upstreams")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            now = time.monotonic()
            due = [s for s in self.statuses if s.next_probe_at <= now]
            if due:
                await asyncio.gather(*(self.probe_one(s) for s in due))
            self._wake.clear()
            delay = max(0.0, min(s.next_probe_at for s in self.statuses) - time.monotonic())
            # Sleep until the next probe is due, or until a failed request asks for one now.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=delay)
