"""Serving an ASGI app as the services here do: our JSON logs only (no access lines), and a bounded drain."""

from __future__ import annotations

import contextlib
import signal
import sys
from types import FrameType

import structlog
import uvicorn
from uvicorn.config import STARTUP_FAILURE

from foundry_common.drain import Drain

# Once uvicorn stops (at once, or after a Drain), open HTTP answers get this long before they are cut. Docker waits
# 10 s after SIGTERM by default before it kills.
GRACEFUL_SECONDS = 5

log = structlog.get_logger("foundry_common.server")


class DrainingServer(uvicorn.Server):
    """uvicorn, except that the first SIGTERM (or Ctrl-C) starts `drain` instead of stopping; uvicorn's own stop
    (closing the port, then the websockets) begins when the drain has finished, or at a second signal."""

    def __init__(self, config: uvicorn.Config, drain: Drain) -> None:
        super().__init__(config)
        self.drain = drain

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.drain.draining or self.should_exit:
            log.warning("stopping_now", signal=signal.Signals(sig).name, in_flight=self.drain.in_flight)
            super().handle_exit(sig, frame)
            return
        self.drain.begin()
        log.info(
            "draining",
            signal=signal.Signals(sig).name,
            in_flight=self.drain.in_flight,
            notice_seconds=self.drain.notice,
            grace_seconds=self.drain.grace,
        )

    async def on_tick(self, counter: int) -> bool:
        # uvicorn's main loop calls this every 0.1 s and stops when it returns True.
        if not self.should_exit and self.drain.finished():
            left = self.drain.in_flight
            (log.warning if left else log.info)("drained", waited_seconds=round(self.drain.waited(), 2), in_flight=left)
            self.should_exit = True
        return await super().on_tick(counter)


def serve(app: object, host: str, port: int, drain: Drain | None = None) -> None:
    options = {"host": host, "port": port, "log_config": None, "access_log": False}
    if drain is None:
        uvicorn.run(app, timeout_graceful_shutdown=GRACEFUL_SECONDS, **options)  # type: ignore[arg-type]
        return
    config = uvicorn.Config(app, timeout_graceful_shutdown=GRACEFUL_SECONDS, **options)  # type: ignore[arg-type]
    server = DrainingServer(config, drain)
    with contextlib.suppress(KeyboardInterrupt):  # a second Ctrl-C, as uvicorn.run does
        server.run()
    if not server.started:
        sys.exit(STARTUP_FAILURE)  # as uvicorn.run: it could not start (e.g. its port is taken)
