"""Entry point: read the settings (exit 2 on bad ones), then serve the router with uvicorn."""

from __future__ import annotations

import structlog
import uvicorn

from foundry_common.logs import configure_logging
from foundry_common.settings import load_settings
from foundry_router.settings import SECRET_VARIABLES, Settings

log = structlog.get_logger("foundry_router")

# Docker waits 10 s after SIGTERM: open answers get 5 s to finish.
GRACEFUL_SECONDS = 5


def main() -> None:
    settings = load_settings(Settings, SECRET_VARIABLES)
    # One line per request is written by the proxy; the probes' own request lines would only add noise.
    configure_logging(settings.log_level, settings.log_format, quiet=("httpx", "aiohttp.access"))
    from foundry_router.app import create_app

    app = create_app(settings)
    log.info("router_starting", host=settings.host, port=settings.port, upstreams=settings.upstream_urls)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=GRACEFUL_SECONDS,
    )


if __name__ == "__main__":
    main()
