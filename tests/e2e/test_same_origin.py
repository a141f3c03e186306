"""Nothing leaves the machine, on the Compose stack (issue 22): its pages opened in Debian's Chromium fail a test on
any request that leaves 127.0.0.1 (another port of it is this machine; data: and blob: URLs are the page's own).

Open WebUI's sign-in page, then its chat page after signing in through that form as the admin, and the chat
service's page with an answer from the embedded model. The processes' pages, the static site's among them, are
tests/browser/test_same_origin_pages.py's. Grafana's pages are not opened: Grafana is absent from the offline stack,
whose images are all built on this machine (compose.offline.yaml), and its image cannot be built here.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import BrowserContext, expect, sync_playwright

from tests.browser.test_same_origin_pages import RequestWatch, send
from tests.browser.webgpu_site import launch_chromium
from tests.e2e.stack import ADMIN, EMBEDDED_MODEL, HOST_MODEL, Stack

pytestmark = pytest.mark.e2e

MODEL_NAME = re.compile(f"^(?:{re.escape(EMBEDDED_MODEL)}|{re.escape(HOST_MODEL)})$")


@pytest.fixture
def context() -> Iterator[BrowserContext]:
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright, webgpu=False)
        try:
            yield browser.new_context(viewport={"width": 1280, "height": 900})
        finally:
            browser.close()


def test_open_webui_sign_in_and_chat_pages_stay_on_this_machine(
    stack: Stack, webui_token: str, context: BrowserContext
) -> None:
    # webui_token: the admin account exists (the first one signed up), so the form signs in rather than up.
    assert webui_token
    watch = RequestWatch.on(context)
    errors: list[str] = []
    context.on("weberror", lambda error: errors.append(f"page error: {error.error}"))
    context.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page = context.new_page()
    try:
        page.goto(stack.url("open-webui"))
        email = page.locator("#email")
        expect(email).to_be_visible(timeout=60_000)
        email.fill(ADMIN["email"])
        page.locator("input[type='password']").fill(ADMIN["password"])
        with page.expect_response(lambda response: urlsplit(response.url).path == "/api/models"):
            page.keyboard.press("Enter")
        expect(page.locator("#chat-input")).to_be_attached(timeout=60_000)
        # The model picker names a model: the chat page has loaded what it shows at start (models, chats, settings).
        expect(page.get_by_text(MODEL_NAME).first).to_be_visible(timeout=30_000)
    except AssertionError as failure:
        raise AssertionError(
            f"{failure}\nrequests: {watch.requests}\nfailed: {watch.failed}\nerrors: {errors}"
        ) from None
    watch.assert_stayed_on_this_machine("Open WebUI's sign-in and chat pages")


def test_the_stacks_chat_page_stays_on_this_machine(stack: Stack, context: BrowserContext) -> None:
    stack.wait_chat_ready()
    watch = RequestWatch.on(context)
    page = context.new_page()
    page.goto(stack.url("chat-app"))
    expect(page.locator("#chat-input")).to_be_visible(timeout=30_000)
    send(page, "Hello")
    watch.assert_stayed_on_this_machine("the chat page")
    watch.assert_nothing_refused()
