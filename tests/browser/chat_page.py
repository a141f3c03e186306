"""The chat page (/chat) in a recorded browser context, driven through the state it publishes in the DOM
(body[data-state], output#chat-json): shared by the tiny-model and the real-model tests."""

from __future__ import annotations

import json
from collections.abc import Callable

from playwright.sync_api import Page

from tests.browser.recorded_page import RecordedPage

SETTLED = "body[data-state='ready'], body[data-state='no-model']"


class ChatPage(RecordedPage):
    """The chat page, with its turns read from output#chat-json."""

    def open(self, model: str = "tiny-chat", ep: str = "wasm", tokens: int = 24) -> Page:
        self.page.goto(f"{self.server.url}/chat?model={model}&ep={ep}&max_tokens={tokens}")
        return self.settled()

    def settled(self, timeout: float = 120_000) -> Page:
        self.page.locator(SETTLED).wait_for(state="attached", timeout=timeout)
        return self.page

    def ready(self) -> Page:
        page = self.settled()
        assert page.get_attribute("body", "data-state") == "ready", page.inner_text("#model-error")
        return page

    def turns(self) -> int:
        return int(self.page.get_attribute("#chat-json", "data-seq") or 0)

    def send(self, text: str, timeout: float = 120_000, then: Callable[[], None] = lambda: None) -> dict:
        before = self.turns()
        self.page.fill("#prompt", text)
        # The click returns once the page has handled it, which includes the prompt's pass on WASM (main thread).
        self.page.click("#send", timeout=timeout)
        then()
        self.page.locator(f"#chat-json[data-seq='{before + 1}']").wait_for(state="attached", timeout=timeout)
        self.page.locator("body[data-state='ready']").wait_for(state="attached", timeout=timeout)
        return json.loads(self.page.text_content("#chat-json") or "{}")

    def model_requests(self) -> list[str]:
        """Requests for model files (not the folder listings, which end in /)."""
        return [url for url in self.requests if "/models/" in url and not url.endswith("/")]

    def errors(self) -> list[str]:
        # The side-by-side's router is absent in this tier: its 502 on /v1/models is expected and shown.
        return [line for line in self.console if line.startswith(("error", "pageerror")) and "502" not in line]
