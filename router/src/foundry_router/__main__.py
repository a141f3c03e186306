"""Entry point: read the settings (exit 2 on bad ones), then serve the router with uvicorn."""

from __future__ import annotations

import structlog

from foundry_common.logs import configure_logging
from foundry_common.server import serve
from foundry_common.settings import load_settings
from foundry_router.settings import SECRET_VARIABLES, Settings

log = structlog.get_logger("foundry_router")


def main() -> None:
    settings = load_settings(Settings, SECRET_VARIABLES)
    # One line per request is written by the proxy; the probes' own request lines would only add noise.
    configure_logging(settings.log_level, settings.log_format, quiet=("httpx", "aiohttp.access"))
    from foundry_router.app import create_app

    app = create_app(settings)
    log.info("router_starting", host=settings.host, port=settings.port, upstreams=settings.upstream_urls)
    serve(app, settings.host, settings.port, drain=app.state.drain)


if __name__ == "__main__":
    main()
