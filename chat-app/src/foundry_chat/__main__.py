"""Entry point: read the settings (exit 2 on bad ones), then serve the app (foundry_common.server.run_service)."""

from __future__ import annotations

from foundry_chat.settings import load_settings
from foundry_common.server import run_service


def main() -> None:
    settings = load_settings()
    # Chainlit announces every translation file it writes at start; its warnings still come through. The app is
    # imported after logging is set up: Chainlit logs while it loads.
    run_service(settings, "foundry_chat.app:create_app", "chat_starting",
                quiet=("httpx", "httpx2", "openai", "chainlit"), router=settings.router_url)  # fmt: skip


if __name__ == "__main__":
    main()
