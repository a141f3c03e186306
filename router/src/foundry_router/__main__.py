"""Entry point: read the settings (exit 2 on bad ones), then serve the router (foundry_common.server.run_service)."""

from __future__ import annotations

from foundry_common.server import run_service
from foundry_common.settings import load_settings
from foundry_router.settings import SECRET_VARIABLES, Settings


def main() -> None:
    settings = load_settings(Settings, SECRET_VARIABLES)
    # One line per request is written by the proxy; the probes' own request lines would only add noise.
    run_service(settings, "foundry_router.app:create_app", "router_starting", quiet=("httpx", "aiohttp.access"),
                upstreams=settings.upstream_urls)  # fmt: skip


if __name__ == "__main__":
    main()
