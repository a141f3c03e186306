"""The login page (CHAT_PASSWORD) in Debian's Chromium: a wrong password is refused in words, the right one chats."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from chat_support import ChatProcess, running_chat
from playwright.sync_api import expect, sync_playwright
from test_chat_browser import CHROMIUM, CHROMIUM_ARGS

from tests.support.process import GatewayProcess

pytestmark = pytest.mark.browser

PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def guarded(gateway: GatewayProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChatProcess]:
    with running_chat(tmp_path_factory.mktemp("guarded"), [f"{gateway.url}/v1"], CHAT_PASSWORD=PASSWORD) as service:
        yield service


def test_a_wrong_password_is_refused_in_words_and_the_right_one_chats(guarded: ChatProcess, artifacts: Path) -> None:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(guarded.url)
            expect(page.get_by_text("Username")).to_be_visible(timeout=30_000)
            page.locator("#email").fill("admin")
            page.locator("#password").fill("wrong password")
            page.keyboard.press("Enter")
            expect(page.get_by_text("Wrong username or password.")).to_be_visible(timeout=10_000)
            page.screenshot(path=str(artifacts / "chat-app-login-refused.png"))
            expect(page.locator("#chat-input")).to_have_count(0)

            page.locator("#password").fill(PASSWORD)
            page.keyboard.press("Enter")
            composer = page.locator("#chat-input")
            expect(composer).to_be_visible(timeout=30_000)
            composer.click()
            page.keyboard.type("Hello after logging in")
            page.locator("#chat-submit").click()
            answer = page.locator('[data-step-type="assistant_message"]').last
            expect(answer).to_contain_text(" tokens · ", timeout=30_000)
        finally:
            browser.close()
