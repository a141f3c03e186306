"""Entry point: start the runtime, serve the gateway, stop both cleanly on SIGTERM."""

from __future__ import annotations

import structlog
import uvicorn

from foundry_common.logs import configure_logging
from foundry_common.settings import load_settings
from foundry_embedded.gateway import create_app
from foundry_embedded.metrics import Metrics
from foundry_embedded.native_log import capture_native_stderr
from foundry_embedded.runtime import EmbeddedRuntime
from foundry_embedded.settings import Settings

log = structlog.get_logger("foundry_embedded")

# Docker waits 10 s after SIGTERM before SIGKILL: streams get 5 s to finish, then the runtime stops
# (bounded in the app's lifespan). uvicorn then re-raises SIGTERM, the conventional exit (143).
GRACEFUL_STREAM_SECONDS = 5


def main() -> None:
    settings = load_settings(Settings)
    configure_logging(settings.log_level, settings.log_format)
    if settings.log_format == "json":
        capture_native_stderr()
    metrics = Metrics()
    runtime = EmbeddedRuntime(settings, metrics)
    runtime.start()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, runtime, metrics),
            host=settings.host,
            port=settings.port,
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=GRACEFUL_STREAM_SECONDS,
        )
    )
    log.info("gateway_starting", host=settings.host, port=settings.port)
    server.run()


if __name__ == "__main__":
    main()
