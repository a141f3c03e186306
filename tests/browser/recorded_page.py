"""A page of the static site in a fresh browser context, with every request and console message recorded from
before the first navigation: what the digits and chat page tests check "nothing leaves the origin" with."""

from __future__ import annotations

from urllib.parse import urlsplit

from playwright.sync_api import Browser, Page

from tests.browser.webgpu_site import Nginx


class RecordedPage:
    def __init__(self, browser: Browser, server: Nginx) -> None:
        self.context = browser.new_context(viewport={"width": 1280, "height": 1000})
        self.page: Page = self.context.new_page()
        self.server = server
        self.requests: list[str] = []
        self.console: list[str] = []
        self.context.on("request", lambda request: self.requests.append(request.url))
        self.page.on("console", lambda message: self.console.append(f"{message.type}: {message.text}"))
        self.page.on("pageerror", lambda error: self.console.append(f"pageerror: {error}"))

    def foreign_requests(self) -> list[str]:
        origin = urlsplit(self.server.url)
        return [
            url
            for url in self.requests
            if urlsplit(url).scheme not in {"data", "blob"} and urlsplit(url)[:2] != origin[:2]
        ]

    def csp_violations(self) -> list[str]:
        return [line for line in self.console if "Content Security Policy" in line or "pageerror" in line]

    def close(self) -> None:
        self.context.close()
