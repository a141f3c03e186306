"""The router's parts, built once from the settings and shared by every request."""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp
import httpx
import structlog

from foundry_router.metrics import Recorder
from foundry_router.settings import Settings
from foundry_router.upstreams import Registry, Source

log = structlog.get_logger("foundry_router")

KEEPALIVE_SECONDS = 4.0


@dataclass
class Router:
    settings: Settings
    registry: Registry
    recorder: Recorder
    probe_client: httpx.AsyncClient
    session: aiohttp.ClientSession | None = None

    @property
    def warnings(self) -> list[str]:
        if self.settings.exposed_without_keys:
            return [
                f"published on {self.settings.published_address} without API keys: anyone who reaches that address "
                "can use the models; set ROUTER_API_KEYS (or publish on 127.0.0.1)"
            ]
        return []

    async def start(self) -> None:
        # Kept-alive connections to the upstreams; no limit here: the per-upstream caps (Slots) bound the load.
        self.session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=3, sock_read=self.settings.request_timeout_seconds),
            connector=aiohttp.TCPConnector(limit=0),
            auto_decompress=True,
        )
        for warning in self.warnings:
            log.warning("router_exposed", message=warning)
        # One probe round before serving, so that the first request already knows the models.
        await self.registry.probe_all()
        for status in self.registry.statuses:
            self.recorder.prepare(status.upstream.name)
        self.registry.start()

    async def stop(self) -> None:
        await self.registry.stop()
        if self.session is not None:
            await self.session.close()
        await self.probe_client.aclose()


def sources_from(settings: Settings) -> list[Source]:
    sources = [Source(url, settings.key_for(url)) for url in settings.upstream_urls]
    if settings.cloud_base_url:
        key = settings.cloud_api_key or settings.api_key
        sources.append(Source(settings.cloud_base_url, key, cloud=True, fixed_model=settings.cloud_model))
    return sources


def build_router(settings: Settings) -> Router:
    timeout = settings.probe_timeout_seconds
    probe_client = httpx.AsyncClient(timeout=httpx.Timeout(timeout, connect=min(timeout, 2.0)))
    registry = Registry(
        sources_from(settings),
        probe_client,
        interval=settings.probe_interval_seconds,
        max_backoff=settings.probe_max_backoff_seconds,
        max_concurrency=settings.max_concurrency,
        queue_size=settings.queue_size,
        targets=settings.targets,
    )
    return Router(settings, registry, Recorder(registry), probe_client)
