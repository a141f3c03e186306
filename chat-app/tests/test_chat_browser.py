"""The UI in Debian's Chromium (Playwright): open the page, set the temperature to 0 in the settings panel, ask a
question, see the answer stream in, and read it: the real model (SmolLM2-135M-Instruct) names Paris."""

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


@pytest.fixture(scope="module")
def chat(real_model_chat: ChatProcess) -> ChatProcess:
    """The chat in front of the real model: the answer's meaning is read, and it is the README's picture."""
    return real_model_chat


def test_set_greedy_in_the_panel_ask_and_read_the_streamed_answer(chat: ChatProcess, artifacts: Path) -> None:
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
            # The settings panel: the temperature slider (the panel's first) to its minimum, 0: greedy answers.
            page.locator("#chat-settings-open-modal").click()
            temperature = page.get_by_role("slider").first
            temperature.focus()
            page.keyboard.press("Home")
            expect(temperature).to_have_attribute("aria-valuenow", "0")
            page.locator("#confirm").click()
            composer.click()
            page.keyboard.type("What is the capital of France?")
            submit = page.locator("#chat-submit")
            expect(submit).to_be_enabled()
            submit.click()
            answer = page.locator('[data-step-type="assistant_message"]').last
            expect(answer).to_contain_text(" tokens · ", timeout=60_000)
            expect(answer).to_contain_text("Paris")
            # In the conversation (the sidebar lists the thread under the same words).
            expect(
                page.locator('[data-step-type="user_message"]').get_by_text("What is the capital of France?")
            ).to_be_visible()
            page.screenshot(path=str(artifacts / "chat-app-answer.png"), full_page=True)
        finally:
            browser.close()
    assert stream_frames, "the answer arrived as stream_token events over the page's WebSocket"
