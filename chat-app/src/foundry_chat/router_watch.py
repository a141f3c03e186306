"""What the router says about itself: one background task reads its /readyz every ROUTER_POLL_SECONDS.

The chat keeps the last answer (ready, the models it serves, each upstream's state, an embedded service that is
still downloading) for the settings panel, the "no model is reachable" page, the download banner and the chat's
own /readyz. The router is the one that probes upstreams; this only asks it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import structlog

log = structlog.get_logger("foundry_chat.router_watch")

# An embedded Foundry Local service in these states is getting its model ready: the chat shows a banner.
PREPARING_STATES = ("starting", "downloading", "loading")
START_ROUTER = "start it with `docker compose up -d router`"


@dataclass(frozen=True)
class Preparing:
    """An upstream whose model is on its way (for the banner)."""

    upstream: str
    state: str
    message: str = ""
    percent: float | None = None


@dataclass(frozen=True)
class RouterStatus:
    # False when /readyz could not be read at all (the router is down, or ROUTER_URL points elsewhere).
    reachable: bool = False
    ready: bool = False
    models: tuple[str, ...] = ()
    # The router's upstream list as it reports it: name, url, cloud, state, shape, models, error...
    upstreams: tuple[dict, ...] = ()
    # Why there is no model, for people: the router's own message, or why it could not be asked.
    message: str = ""
    warnings: tuple[str, ...] = field(default=())

    @property
    def preparing(self) -> Preparing | None:
        """The first local upstream whose embedded service is still starting, downloading or loading its model."""
        for upstream in self.upstreams:
            state = upstream.get("service_state")
            if not upstream.get("cloud") and state in PREPARING_STATES:
                percent = upstream.get("download_percent")
                return Preparing(
                    upstream=str(upstream.get("name") or upstream.get("url") or "?"),
                    state=str(state),
                    message=str(upstream.get("service_message") or ""),
                    percent=float(percent) if isinstance(percent, int | float) else None,
                )
        return None


def describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def unreachable(router_url: str, why: str) -> RouterStatus:
    return RouterStatus(message=f"the router at {router_url} is not reachable: {why}; {START_ROUTER}")


def status_from(router_url: str, code: int, body: object) -> RouterStatus:
    """The chat's view of one /readyz answer (200 when ready, 503 before; anything else is not the router's)."""
    if not isinstance(body, dict) or not isinstance(body.get("ready"), bool):
        return unreachable(router_url, f"it answered HTTP {code} without a readiness report (is ROUTER_URL right?)")
    models = body.get("models")
    upstreams = body.get("upstreams")
    warnings = body.get("warnings")
    message = body.get("message")
    return RouterStatus(
        reachable=True,
        ready=body["ready"],
        models=tuple(m for m in models if isinstance(m, str)) if isinstance(models, list) else (),
        upstreams=tuple(u for u in upstreams if isinstance(u, dict)) if isinstance(upstreams, list) else (),
        message=message if isinstance(message, str) else "",
        warnings=tuple(w for w in warnings if isinstance(w, str)) if isinstance(warnings, list) else (),
    )


class RouterWatch:
    """The last /readyz of the router, read right away at start and then every `interval` seconds."""

    def __init__(
        self,
        router_url: str,
        client: httpx.AsyncClient,
        interval: float,
        on_change: Callable[[RouterStatus], None] = lambda status: None,
    ) -> None:
        self.router_url = router_url
        self.readyz_url = f"{router_url.removesuffix('/v1')}/readyz"
        self.client = client
        self.interval = interval
        self.on_change = on_change
        self.status = RouterStatus(message=f"the router at {router_url} has not been asked yet")
        self._task: asyncio.Task | None = None
        self._reading: asyncio.Task | None = None
        self._wake = asyncio.Event()

    async def read(self) -> RouterStatus:
        try:
            response = await self.client.get(self.readyz_url)
        except httpx.HTTPError as exc:
            return unreachable(self.router_url, describe(exc))
        try:
            body = response.json()
        except ValueError:
            body = None
        return status_from(self.router_url, response.status_code, body)

    async def refresh(self) -> RouterStatus:
        """Read /readyz now (callers at the same moment share one read) and keep the answer."""
        if self._reading is None or self._reading.done():
            self._reading = asyncio.create_task(self._read_and_keep(), name="router-readyz")
        return await asyncio.shield(self._reading)

    async def _read_and_keep(self) -> RouterStatus:
        status = await self.read()
        before, self.status = self.status, status
        if (before.reachable, before.ready, before.models) != (status.reachable, status.ready, status.models):
            log.info(
                "router_state",
                router=self.router_url,
                reachable=status.reachable,
                ready=status.ready,
                models=list(status.models),
                message=status.message or None,
            )
        self.on_change(status)
        return status

    def wake(self) -> None:
        """Read again now instead of at the next interval (e.g. after a request failed)."""
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="router-watch")

    async def stop(self) -> None:
        for task in (self._task, self._reading):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)
            self._wake.clear()
            try:
                await self.refresh()
            except Exception:  # never let the watch die: the next round tries again
                log.exception("router_watch_failed")
