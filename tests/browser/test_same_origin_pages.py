"""Nothing leaves the machine (issue 22): each page of the stack's processes opened in Debian's Chromium, every
request it makes recorded, and a test fails on any that leaves 127.0.0.1, with their URLs.

Another port of 127.0.0.1 is this machine; data: and blob: URLs are the page's own. Requests to anywhere else are
aborted (so a failing test sends nothing either) and still counted: Playwright reports a request before routing it.
Here: the chat (Chainlit, a real process in front of the tiny model, as the chat-app tests start it) and its login
page, and the static site's pages (digits at /, the chat at /chat). tests/e2e/test_same_origin.py opens the Compose
stack's pages (Open WebUI, the chat).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, Request, expect

from tests.browser.chat_page import ChatPage
from tests.browser.webgpu_site import Nginx
from tests.support.chat import ChatProcess, running_chat
from tests.support.process import GatewayProcess

pytestmark = pytest.mark.browser

# What the route intercepts: every URL but those of 127.0.0.1 (any scheme, any port) and the page's own data.
OFF_MACHINE = re.compile(r"^(?!(?:https?|wss?)://127\.0\.0\.1(?:[:/?#]|$)|data:|blob:)")
PASSWORD = "correct horse battery"
# An address kept for documentation (RFC 5737): never routed, so nothing is sent there even by a broken test.
FOREIGN_IMAGE = "http://203.0.113.7/pixel.png"


def on_this_machine(url: str) -> bool:
    return OFF_MACHINE.match(url) is None


@dataclass
class RequestWatch:
    """Every request of a browser context (WebSockets included), the failed ones, and what the page's
    Content-Security-Policy refused: Chromium reports such a load as a request that fails with "csp", never sent."""

    requests: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    # URLs the policy refused, and the console's words for each refusal.
    refused: list[str] = field(default_factory=list)
    policy_messages: list[str] = field(default_factory=list)

    @classmethod
    def on(cls, context: BrowserContext) -> RequestWatch:
        watch = cls()
        context.route(OFF_MACHINE, lambda route: route.abort("blockedbyclient"))
        context.on("request", lambda request: watch.requests.append(request.url))
        context.on("requestfailed", watch._failed)
        context.on("console", watch._console)
        context.on("page", lambda page: page.on("websocket", lambda socket: watch.requests.append(socket.url)))
        return watch

    def _failed(self, request: Request) -> None:
        if request.failure == "csp":
            self.refused.append(request.url)
        else:
            self.failed.append(f"{request.url} ({request.failure})")

    def _console(self, message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            self.policy_messages.append(message.text)

    def off_machine(self) -> list[str]:
        """The requests that were sent, or would have been but for the route, off this machine."""
        never_sent = list(self.refused)
        sent = []
        for url in self.requests:
            if url in never_sent:
                never_sent.remove(url)
            elif not on_this_machine(url):
                sent.append(url)
        return sent

    def assert_stayed_on_this_machine(self, what: str) -> None:
        off = self.off_machine()
        assert not off, (
            f"{what} made requests that leave 127.0.0.1:\n  " + "\n  ".join(off) + "\nfailed requests:\n  "
            + "\n  ".join(self.failed)
        )  # fmt: skip
        assert self.requests, f"{what}: no request was seen at all"

    def assert_nothing_refused(self) -> None:
        """The page's policy let all the page needs load (its own inline scripts run: their hashes are listed)."""
        assert (self.refused, self.policy_messages) == ([], []), (self.refused, self.policy_messages)


def test_the_off_machine_pattern_tells_this_machine_from_others() -> None:
    here = ["http://127.0.0.1:8080/", "ws://127.0.0.1:9/ws", "https://127.0.0.1", "data:image/png;base64,AA", "blob:x"]
    away = [
        "https://fonts.googleapis.com/css2?family=Inter",
        "http://127.0.0.10/x",
        "http://127.0.0.1.example.test/",
        "http://localhost:8080/",
        "http://[::1]:8080/",
        FOREIGN_IMAGE,
    ]
    assert [url for url in here if not on_this_machine(url)] == []
    assert [url for url in away if on_this_machine(url)] == []


@pytest.fixture(scope="module")
def chat(gateway: GatewayProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChatProcess]:
    with running_chat(tmp_path_factory.mktemp("chat"), [f"{gateway.url}/v1"]) as service:
        yield service


@pytest.fixture(scope="module")
def guarded(gateway: GatewayProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChatProcess]:
    with running_chat(tmp_path_factory.mktemp("guarded"), [f"{gateway.url}/v1"], CHAT_PASSWORD=PASSWORD) as service:
        yield service


@pytest.fixture
def context(chromium_plain: Browser) -> Iterator[BrowserContext]:
    context = chromium_plain.new_context(viewport={"width": 1280, "height": 900})
    yield context
    context.close()


def send(page: Page, text: str) -> None:
    """Type into Chainlit's composer and send; returns once the answer is complete."""
    page.locator("#chat-input").click()
    page.keyboard.type(text)
    submit = page.locator("#chat-submit")
    expect(submit).to_be_enabled(timeout=30_000)
    submit.click()
    expect(page.locator('[data-step-type="assistant_message"]').last).to_contain_text(" tokens · ", timeout=60_000)


def test_the_chat_page_and_a_conversation_stay_on_this_machine(chat: ChatProcess, context: BrowserContext) -> None:
    watch = RequestWatch.on(context)
    page = context.new_page()
    page.goto(chat.url)
    expect(page.locator("#chat-input")).to_be_visible(timeout=30_000)
    send(page, "Hello")
    # The sidebar's thread list and the Readme (chainlit.md) as well.
    page.get_by_text("Readme").click()
    expect(page.get_by_text("A private chat with models running on your own machine")).to_be_visible()
    watch.assert_stayed_on_this_machine("the chat page")
    watch.assert_nothing_refused()
    assert any("/ws/socket.io/" in url for url in watch.requests), "the page talked to the chat over Socket.IO"


def test_an_image_in_a_message_is_not_fetched_from_another_host(chat: ChatProcess, context: BrowserContext) -> None:
    """Messages are Markdown: an image in one (the user's, or a model's answer) would be fetched from its host. The
    page's Content-Security-Policy refuses it before any request is made."""
    watch = RequestWatch.on(context)
    page = context.new_page()
    page.goto(chat.url)
    expect(page.locator("#chat-input")).to_be_visible(timeout=30_000)
    with context.expect_event("requestfailed", lambda request: request.url == FOREIGN_IMAGE):
        send(page, f"![a pixel]({FOREIGN_IMAGE})")
    expect(page.locator(f'[data-step-type="user_message"] img[src="{FOREIGN_IMAGE}"]')).to_have_count(1)
    # Chromium's word for a load the page's Content-Security-Policy refused (not the route's abort).
    assert FOREIGN_IMAGE in watch.refused, f"the image was not refused by the page's policy: {watch.failed}"
    watch.assert_stayed_on_this_machine("the chat page showing an image of another host")


def test_the_login_page_and_the_chat_behind_it_stay_on_this_machine(
    guarded: ChatProcess, context: BrowserContext
) -> None:
    watch = RequestWatch.on(context)
    page = context.new_page()
    page.goto(guarded.url)
    expect(page.get_by_text("Username")).to_be_visible(timeout=30_000)
    page.locator("#email").fill("admin")
    page.locator("#password").fill(PASSWORD)
    page.keyboard.press("Enter")
    expect(page.locator("#chat-input")).to_be_visible(timeout=30_000)
    send(page, "Hello after logging in")
    watch.assert_stayed_on_this_machine("the login page and the chat")
    watch.assert_nothing_refused()


def test_the_static_sites_pages_stay_on_this_machine(chromium_plain: Browser, webgpu_server: Nginx) -> None:
    chat_page = ChatPage(chromium_plain, webgpu_server)
    try:
        watch = RequestWatch.on(chat_page.context)
        digits = chat_page.context.new_page()
        digits.goto(f"{webgpu_server.url}/?ep=wasm")
        digits.locator("body[data-state='ready']").wait_for(timeout=90_000)
        before = int(digits.get_attribute("#result-json", "data-seq") or 0)
        digits.get_by_role("button", name="Classify sample digit 3").click()
        digits.locator(f"#result-json[data-seq='{before + 1}']").wait_for(state="attached", timeout=60_000)
        chat_page.open(model="tiny-chat", ep="wasm", tokens=8)
        chat_page.ready()
        assert chat_page.send("Hello")["ep"] == "wasm"
        watch.assert_stayed_on_this_machine("the static site's pages")
        assert any(urlsplit(url).path == "/chat" for url in watch.requests)
    finally:
        chat_page.close()


def test_the_page_names_no_url_of_another_host_to_load(chat: ChatProcess) -> None:
    """What the chat serves as its page: no element that loads (src, href) names another origin."""
    html = chat.get("/").text
    loaded = re.findall(r"""<[a-z]+\b[^>]*?\b(?:src|href)\s*=\s*["']?([^"'\s>]+)""", html, re.IGNORECASE)
    assert "/assets/" in " ".join(loaded)
    assert [url for url in loaded if urlsplit(url).netloc] == []
