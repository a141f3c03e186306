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
from foundry_chat.persistence import History
from foundry_chat.router_watch import RouterStatus, RouterWatch
from foundry_chat.settings import Settings
from foundry_common.drain import Drain

# Reading the router's /readyz: it answers from memory, so a slow answer means it is in trouble.
READYZ_TIMEOUT_SECONDS = 3.0


@dataclass
class Service:
    settings: Settings
    metrics: ChatMetrics
    router: RouterWatch
    chat: ChatService
    http: httpx.AsyncClient
    history: History
    # Stopping without cutting answers off: answers run inside drain.work() (foundry_common/drain.py).
    drain: Drain
    # Ids of the chat sessions with a connected browser (a set, so reconnects never count twice).
    sessions: set[str] = field(default_factory=set)

    _lag_task: asyncio.Task | None = None

    async def start(self) -> None:
        await self.history.start()
        # One read before serving, so that the first page already knows the models.
        await self.router.refresh()
        self.router.start()
        self._lag_task = asyncio.create_task(watch_event_loop_lag(self.metrics), name="event-loop-lag")

    async def stop(self) -> None:
        if self._lag_task is not None:
            self._lag_task.cancel()
        await self.router.stop()
        await self.chat.close()
        await self.http.aclose()
        await self.history.close()


LAG_SAMPLE_SECONDS = 0.1


async def watch_event_loop_lag(metrics: ChatMetrics) -> None:
    """Measure how late a timer fires: the delay every user's next token would see at that moment."""
    loop = asyncio.get_running_loop()
    while True:
        expected = loop.time() + LAG_SAMPLE_SECONDS
        await asyncio.sleep(LAG_SAMPLE_SECONDS)
        metrics.event_loop_lag.observe(max(0.0, loop.time() - expected))


def build_service(settings: Settings) -> Service:
    metrics = ChatMetrics()
    http = httpx.AsyncClient(timeout=httpx.Timeout(READYZ_TIMEOUT_SECONDS, connect=2.0))

    def publish(status: RouterStatus) -> None:
        metrics.router_up.set(1 if status.ready else 0)

    router = RouterWatch(settings.router_url, http, settings.router_poll_seconds, on_change=publish)
    chat = ChatService(
        settings.router_url,
        settings.router_api_key.get_secret_value(),
        metrics,
        settings.request_timeout_seconds,
        settings.log_prompts,
    )
    service = Service(settings, metrics, router, chat, http, History(settings, metrics), settings.drain())
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
