"""The upstreams: what each one is, its state and load, and the background probing that keeps them fresh.

A healthy upstream is re-probed every PROBE_INTERVAL_SECONDS; a failed one with a backoff that doubles up
to PROBE_MAX_BACKOFF_SECONDS, so that a restarted Foundry Local is back in use within seconds, without a
restart of this service. A request that fails marks its upstream down and wakes the prober at once.

A configured URL whose host name resolves to several addresses (a scaled Compose service, `tasks.<name>` in
Swarm) is one upstream per address, re-resolved at every probe round.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

import httpx
import structlog

from foundry_router.admission import Slots
from foundry_router.capacity import STATIC, Targets
from foundry_router.probe import ProbeError, ProbeResult, Shape, probe

log = structlog.get_logger("foundry_router.upstreams")

State = Literal["unknown", "up", "down"]
FIRST_BACKOFF_SECONDS = 0.5
# Weight of the newest time to first token in an upstream's running average (ties in least-in-flight).
TTFT_WEIGHT = 0.2

Resolver = Callable[[str, int], Awaitable[list[str]]]


@dataclass(frozen=True)
class Upstream:
    name: str  # host:port (or host@address:port for one address of several), what people see as "where it ran"
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


@dataclass(frozen=True)
class Source:
    """One configured upstream URL; it stands for one upstream per address its host resolves to."""

    url: str
    api_key: str
    cloud: bool = False
    fixed_model: str | None = None

    @property
    def name(self) -> str:
        return urlsplit(self.url).netloc or self.url

    def single(self) -> Upstream:
        return Upstream(self.name, self.url, self.api_key, self.cloud, self.fixed_model)

    def at(self, address: str) -> Upstream:
        parts = urlsplit(self.url)
        host = f"[{address}]" if ":" in address else address
        netloc = f"{host}:{parts.port}" if parts.port else host
        return Upstream(
            f"{parts.hostname}@{netloc}", urlunsplit(parts._replace(netloc=netloc)), self.api_key, self.cloud
        )

    def needs_resolving(self) -> bool:
        host = urlsplit(self.url).hostname or ""
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return not self.cloud  # the cloud is one endpoint whatever its DNS says (and TLS needs its name)
        return False


async def resolve_addresses(host: str, port: int) -> list[str]:
    """The host's addresses, IPv4 when it has any (localhost has both: that is one server, not two)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    v4 = [info[4][0] for info in infos if info[0] == socket.AF_INET]
    v6 = [info[4][0] for info in infos if info[0] == socket.AF_INET6]
    return sorted(set(v4 or v6), key=lambda a: ipaddress.ip_address(a))


@dataclass
class UpstreamStatus:
    upstream: Upstream
    slots: Slots
    state: State = "unknown"
    shape: Shape | None = None
    models: tuple[str, ...] = ()
    context_lengths: dict[str, int] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)  # alias -> model id, as the upstream reports them
    # (route, model) -> what the upstream answered when asked for a route it does not serve: until the next probe.
    unserved: dict[tuple[str, str], str] = field(default_factory=dict)
    error: str = ""
    service_state: str = ""  # the embedded service's own state (downloading, loading, ready...)
    service_message: str = ""
    download_percent: float | None = None
    failures: int = 0
    next_probe_at: float = 0.0
    ttft_seconds: float | None = None  # running average of recent times to first token
    resolved: bool = True  # False while the host name resolves to nothing: nothing to probe

    @property
    def serving(self) -> bool:
        return self.state == "up" and bool(self.models or self.upstream.fixed_model)

    def serves(self, model: str) -> bool:
        return self.state == "up" and (model in self.models or model == self.upstream.fixed_model)

    def model_for_alias(self, alias: str) -> str | None:
        """The loaded model that this upstream gives `alias` to, if any."""
        model = self.aliases.get(alias) if self.state == "up" else None
        return model if model in self.models else None

    def observe_ttft(self, seconds: float) -> None:
        previous = self.ttft_seconds
        self.ttft_seconds = seconds if previous is None else previous + TTFT_WEIGHT * (seconds - previous)

    def as_dict(self) -> dict:
        body = {
            "name": self.upstream.name,
            "url": self.upstream.base_url,
            "cloud": self.upstream.cloud,
            "state": self.state,
            "shape": self.shape,
            "models": list(self.models) or ([self.upstream.fixed_model] if self.upstream.fixed_model else []),
            "aliases": self.aliases,
            "in_flight": self.slots.in_flight,
            "queued": self.slots.queued,
            "max_concurrency": self.slots.cap,
            # What admission lets in at once now (learned under the cap, or the cap) and the rate it keeps.
            "concurrency_limit": self.slots.limit,
            "stream_rate_floor": self.slots.capacity.targets.rate_floor,
        }
        if self.slots.capacity.last_rate is not None:
            body["stream_rate"] = round(self.slots.capacity.last_rate, 1)
        if self.ttft_seconds is not None:
            body["ttft_ms"] = round(self.ttft_seconds * 1000, 1)
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

    sources: list[Source]
    client: httpx.AsyncClient
    interval: float
    max_backoff: float
    max_concurrency: int
    queue_size: int
    targets: Targets = STATIC  # what admission keeps each stream within (capacity.py)
    resolve: Resolver = resolve_addresses
    on_change: Callable[[UpstreamStatus], None] = lambda status: None
    statuses: list[UpstreamStatus] = field(default_factory=list)
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

    def models(self) -> dict[str, list[UpstreamStatus]]:
        """Each model served now, local first in upstream order, with the upstreams that serve it."""
        found: dict[str, list[UpstreamStatus]] = {}
        for status in self.local:
            if status.state == "up":
                for model in status.models:
                    found.setdefault(model, []).append(status)
        cloud = self.cloud
        if cloud is not None and cloud.serving and cloud.upstream.fixed_model:
            found.setdefault(cloud.upstream.fixed_model, []).append(cloud)
        return found

    def context_length(self, model: str) -> int | None:
        return next((s.context_lengths[model] for s in self.local if model in s.context_lengths), None)

    def model_id(self, name: str) -> str:
        """The model id a request's `model` stands for: itself when an upstream serves that id, else the id the
        first upstream reporting it as an alias gives it (routing may pick another one: their contexts may differ)."""
        if any(s.serves(name) for s in self.statuses):
            return name
        return next((m for s in self.local if (m := s.model_for_alias(name))), name)

    def alias_of(self, model: str) -> str | None:
        """The alias an upstream reports for the model id, if any does."""
        return next((a for s in self.local if s.state == "up" for a, m in s.aliases.items() if m == model), None)

    def snapshot(self) -> list[dict]:
        return [s.as_dict() for s in self.statuses]

    # -- discovery ---------------------------------------------------------------------------------

    async def refresh_addresses(self) -> None:
        """Expand every source into its upstreams; keep the status (and load) of the ones still there."""
        known = {s.upstream: s for s in self.statuses}
        expanded: list[UpstreamStatus] = []
        for upstreams, error in await asyncio.gather(*(self._expand(src) for src in self.sources)):
            for upstream in upstreams:
                status = known.pop(upstream, None) or UpstreamStatus(
                    upstream, Slots(self.max_concurrency, self.queue_size, self.targets)
                )
                status.resolved = not error
                if error and status.next_probe_at <= time.monotonic():
                    changed = status.state != "down" or status.error != error
                    self._failed(status, error)  # looked up again after the backoff, like a failed probe
                    if changed:
                        self.on_change(status)
                expanded.append(status)
        for gone in known.values():
            log.info("upstream_removed", upstream=gone.upstream.name, reason="its address no longer resolves")
            gone.slots.fail_waiters(f"{gone.upstream.name} was removed")
        self.statuses = expanded

    async def _expand(self, source: Source) -> tuple[list[Upstream], str]:
        if not source.needs_resolving():
            return [source.single()], ""
        parts = urlsplit(source.url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            addresses = await self.resolve(parts.hostname or "", port)
        except OSError as exc:
            # Compose removes a stopped service's name: it is down, not gone from the configuration.
            return [source.single()], f"its name {parts.hostname} does not resolve ({exc})"
        if len(addresses) <= 1:
            return [source.single()], ""
        return [source.at(address) for address in addresses], ""

    # -- probing -----------------------------------------------------------------------------------

    async def probe_all(self) -> None:
        await self.refresh_addresses()
        await asyncio.gather(*(self.probe_one(s) for s in self.statuses if s.resolved))

    async def probe_one(self, status: UpstreamStatus) -> None:
        before = (status.state, status.models, status.service_state)
        try:
            result = await probe(self.client, status.upstream.base_url, status.upstream.headers, status.shape)
        except ProbeError as exc:
            self._failed(status, str(exc))
        else:
            self._succeeded(status, result)
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
        status.context_lengths, status.aliases = result.context_lengths, result.aliases
        status.unserved = {}  # asked again from now on: a model may have been loaded that serves the route
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
        status.aliases, status.unserved = {}, {}
        status.service_state, status.download_percent = "", None
        # Forget the shape: whatever comes back on that address may be a different server.
        status.shape = None
        status.failures += 1
        backoff = min(self.max_backoff, FIRST_BACKOFF_SECONDS * 2 ** (status.failures - 1))
        status.next_probe_at = time.monotonic() + backoff
        status.slots.fail_waiters(f"{status.upstream.name} {error}")

    def mark_failed(self, upstream: Upstream, error: str) -> None:
        """A request to this upstream failed: stop routing to it and let the prober find out when it is back."""
        status = self.status_of(upstream)
        if status is not None and status.state != "down":
            log.warning("upstream_marked_down", upstream=upstream.name, error=error)
            self._failed(status, error)
            self.on_change(status)
        self._wake.set()

    def wake(self) -> None:
        """Run the due probes now (a request found an upstream's model list stale)."""
        self._wake.set()

    def status_of(self, upstream: Upstream) -> UpstreamStatus | None:
        return next((s for s in self.statuses if s.upstream == upstream), None)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="probe-upstreams")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            now = time.monotonic()
            if any(s.next_probe_at <= now for s in self.statuses):
                # A round: names re-resolved (new replicas join, removed ones leave), then the due probes.
                await self.refresh_addresses()
                now = time.monotonic()
                due = [s for s in self.statuses if s.next_probe_at <= now and s.resolved]
                await asyncio.gather(*(self.probe_one(s) for s in due))
            self._wake.clear()
            delay = max(0.0, min((s.next_probe_at for s in self.statuses), default=self.interval) - time.monotonic())
            # Sleep until the next probe is due, or until a failed request asks for one now. asyncio.timeout, not
            # wait_for: on Python 3.11 wait_for swallows a cancellation that comes as the wake is set, and `stop`
            # then waited forever (found by test_router_lease.py: a request marks the upstream down, then a stop).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()
