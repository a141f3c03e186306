"""The UI in Debian's Chromium (Playwright): open the page, set the temperature to 0 in the settings panel, ask a
question, see the answer stream in, and read it: the real model (SmolLM2-135M-Instruct) names Paris. And a question
that waits in the router's queue (a paced upstream) shows its place until its answer replaces it."""

from __future__ import annotations

from pathlib import Path

import pytest
from chat_support import ONE_AT_A_TIME, ChatProcess, Holder, running_chat, start_paced_upstream
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


def test_a_waiting_answer_shows_its_place_in_the_queue_then_the_answer(tmp_path: Path, artifacts: Path) -> None:
    """The router takes one request at a time (a paced upstream); a stream the test holds keeps that slot, so the
    page's question waits in the queue: its answer's message says so, until the first token replaces the line."""
    paced = start_paced_upstream(first_token_ms=20, token_interval_ms=5)
    try:
        with running_chat(tmp_path, [paced.url], **ONE_AT_A_TIME, MAX_TOKENS="4") as chat, sync_playwright() as pw:
            assert chat.router is not None
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            holder = Holder(chat.router.base_url)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.goto(chat.url)
                composer = page.locator("#chat-input")
                expect(composer).to_be_visible(timeout=30_000)
                composer.click()
                page.keyboard.type("Who is first?")
                page.locator("#chat-submit").click()
                answer = page.locator('[data-step-type="assistant_message"]').last
                expect(answer).to_contain_text("Waiting for the model: you are next", timeout=30_000)
                page.screenshot(path=str(artifacts / "chat-app-waiting.png"), full_page=True)
                holder.close()  # the slot goes to the page's question
                expect(answer).to_contain_text(" tokens · ", timeout=30_000)
                expect(answer).to_contain_text("tok0 tok1 tok2 tok3")
                expect(answer).not_to_contain_text("Waiting for the model")
            finally:
                holder.close()
                browser.close()
    finally:
        paced.stop()
