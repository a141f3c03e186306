"""Entry point: read the settings (exit 2 on bad ones), then serve the app with uvicorn."""

from __future__ import annotations

import structlog

from foundry_chat.settings import load_settings
from foundry_common.logs import configure_logging
from foundry_common.server import serve

log = structlog.get_logger("foundry_chat")


def main() -> None:
    settings = load_settings()
    # Chainlit announces every translation file it writes at start; its warnings still come through.
    configure_logging(settings.log_level, settings.log_format, quiet=("httpx", "httpx2", "openai", "chainlit"))
    from foundry_chat.app import create_app  # after logging: Chainlit logs while it loads

    app = create_app(settings)
    log.info("chat_starting", host=settings.host, port=settings.port, router=settings.router_url)
    serve(app, settings.host, settings.port, drain=app.state.drain)


if __name__ == "__main__":
    main()
