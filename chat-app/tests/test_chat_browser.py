"""The UI in Debian's Chromium (Playwright): open the page, send a message, see the answer stream in."""

from __future__ import annotations

from pathlib import Path

import pytest
from chat_support import ChatProcess
from playwright.sync_api import WebSocket, expect, sync_playwright

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
# The closed network refuses Chromium's background connections; these flags keep it from trying.
CHROMIUM_ARGS = [
    "--headless=new", "--no-sandbox", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


def test_send_a_message_and_see_the_streamed_answer(chat: ChatProcess, artifacts: Path) -> None:
    stream_frames: list[str] = []

    def watch(socket: WebSocket) -> None:
        socket.on(
            "framereceived",
            lambda frame: stream_frames.append(frame) if isinstance(frame, str) and '"stream_token"' in frame else None,
        )

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("websocket", watch)
            page.goto(chat.url)
            composer = page.locator("#chat-input")
            expect(composer).to_be_visible(timeout=30_000)
            composer.click()
            page.keyboard.type("Hello from the browser test")
            submit = page.locator("#chat-submit")
            expect(submit).to_be_enabled()
            submit.click()
            answer = page.locator('[data-step-type="assistant_message"]').last
            expect(answer).to_contain_text(" tokens · ", timeout=30_000)
            # In the conversation (the sidebar lists the thread under the same words).
            expect(
                page.locator('[data-step-type="user_message"]').get_by_text("Hello from the browser test")
            ).to_be_visible()
            page.screenshot(path=str(artifacts / "chat-app-answer.png"), full_page=True)
        finally:
            browser.close()
    assert stream_frames, "the answer arrived as stream_token events over the page's WebSocket"
