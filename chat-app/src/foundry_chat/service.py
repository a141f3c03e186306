"""The service's parts, built once from the settings and shared by the HTTP routes and the chat handlers.

Chainlit loads the handlers module by file path (a second module object), so the handlers find the
service here rather than through their own imports' globals.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import httpx

from foundry_chat.chat import ChatService
from foundry_chat.metrics import ChatMetrics
from foundry_chat.settings import Settings
from foundry_chat.upstreams import Registry, Upstream, UpstreamStatus, upstream_name


@dataclass
class Service:
    settings: Settings
    metrics: ChatMetrics
    registry: Registry
    chat: ChatService
    probe_client: httpx.AsyncClient
    # Ids of the chat sessions with a connected browser (a set, so reconnects never count twice).
    sessions: set[str] = field(default_factory=set)

    _lag_task: asyncio.Task | None = None

    async def start(self) -> None:
        # One probe round before serving, so that the first page already knows the models.
        await self.registry.probe_all()
        self.registry.start()
        self._lag_task = asyncio.create_task(watch_event_loop_lag(self.metrics), name="event-loop-lag")

    async def stop(self) -> None:
        if self._lag_task is not None:
            self._lag_task.cancel()
        await self.registry.stop()
        await self.chat.close()
        await self.probe_client.aclose()


LAG_SAMPLE_SECONDS = 0.1


async def watch_event_loop_lag(metrics: ChatMetrics) -> None:
    """Measure how late a timer fires: the delay every user's next token would see at that moment."""
    loop = asyncio.get_running_loop()
    while True:
        expected = loop.time() + LAG_SAMPLE_SECONDS
        await asyncio.sleep(LAG_SAMPLE_SECONDS)
        metrics.event_loop_lag.observe(max(0.0, loop.time() - expected))


def upstreams_from(settings: Settings) -> list[Upstream]:
    upstreams = [Upstream(upstream_name(url), url, settings.key_for(url)) for url in settings.upstream_urls]
    if settings.cloud_base_url:
        upstreams.append(
            Upstream(
                upstream_name(settings.cloud_base_url),
                settings.cloud_base_url,
                settings.cloud_api_key or settings.api_key,
                cloud=True,
                fixed_model=settings.cloud_model,
            )
        )
    return upstreams


def build_service(settings: Settings) -> Service:
    metrics = ChatMetrics()
    timeout = settings.probe_timeout_seconds
    probe_client = httpx.AsyncClient(timeout=httpx.Timeout(timeout, connect=min(timeout, 2.0)))

    def publish(status: UpstreamStatus) -> None:
        labels = (status.upstream.name, str(status.upstream.cloud).lower())
        metrics.upstream_up.labels(*labels).set(1 if status.serving else 0)
        metrics.upstream_models.labels(*labels).set(len(status.models))

    statuses = [UpstreamStatus(u) for u in upstreams_from(settings)]
    registry = Registry(
        statuses,
        probe_client,
        interval=settings.probe_interval_seconds,
        max_backoff=settings.probe_max_backoff_seconds,
        on_change=publish,
    )
    for status in statuses:
        publish(status)
        # Exported as 0 from the start, so that a rate (and its dashboard panel) exists before the first one.
        metrics.failovers.labels(status.upstream.name)
    chat = ChatService(registry, metrics, settings.request_timeout_seconds, settings.log_prompts)
    service = Service(settings, metrics, registry, chat, probe_client)
    metrics.track_sessions(lambda: len(service.sessions))
    return service


_current: Service | None = None


def install(service: Service) -> None:
    global _current
    _current = service


def current() -> Service:
    if _current is None:
        raise RuntimeError("the chat service is not started (foundry_chat.app.create_app installs it)")
    return _current
