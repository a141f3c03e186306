"""The chat's page loads nothing from another host (issue 22): Chainlit's own index.html, as installed, after
foundry_chat.chainlit_fixes.same_origin_page. tests/browser/test_same_origin_pages.py opens it in Chromium."""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from foundry_chat.chainlit_fixes import same_origin_page

pytestmark = pytest.mark.unit

# What Chainlit 2.12's page loads from other hosts, all dropped: Inter from Google Fonts (the page falls back to
# the system's fonts) and KaTeX's CSS (LaTeX is off in chainlit_root.py).
KNOWN_FOREIGN = {
    "https://fonts.googleapis.com",
    "https://fonts.gstatic.com",
    "https://fonts.googleapis.com/css2?family=Inter:wght@400;500;700&display=swap",
    "https://cdn.jsdelivr.net/npm/katex@0.16.22/dist/katex.min.css",
}
# Attributes by which an element makes the browser load something.
LOADING = {"src", "href", "srcset", "data", "poster", "action"}


def chainlit_index() -> str:
    spec = importlib.util.find_spec("chainlit")
    assert spec is not None and spec.origin is not None
    return (Path(spec.origin).parent / "frontend" / "dist" / "index.html").read_text(encoding="utf-8")


class Elements(HTMLParser):
    """The page's elements with their attributes, and the text of its inline scripts."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.inline_scripts: list[str] = []
        self._in_inline_script = False
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        self.elements.append((tag, attributes))
        self._in_inline_script = tag == "script" and "src" not in attributes
        if self._in_inline_script:
            self.inline_scripts.append("")

    def handle_data(self, data: str) -> None:
        if self._in_inline_script:
            self.inline_scripts[-1] += data

    def handle_endtag(self, tag: str) -> None:
        self._in_inline_script = False


def test_chainlit_loads_from_other_hosts_only_what_was_checked() -> None:
    """A new Chainlit that loads something else from another host fails here: same_origin_page drops it too, but
    whether the page still works without it is for a person to check (then add it to KNOWN_FOREIGN)."""
    dropped = set(same_origin_page(chainlit_index()).dropped)
    assert dropped == KNOWN_FOREIGN, f"new: {sorted(dropped - KNOWN_FOREIGN)}, gone: {sorted(KNOWN_FOREIGN - dropped)}"


def test_the_page_loads_only_from_its_own_origin_and_says_so() -> None:
    page = same_origin_page(chainlit_index()).html
    elements = Elements(page)
    loaded = [value for _, attributes in elements.elements for name, value in attributes.items() if name in LOADING]
    assert any(url.startswith("/assets/") for url in loaded), loaded
    assert [url for url in loaded if urlsplit(url).netloc] == []

    # The policy comes before any element it governs, and lists exactly the page's inline scripts.
    tags = [tag for tag, _ in elements.elements]
    assert tags.index("meta", tags.index("head")) < min(tags.index("script"), tags.index("link"))
    (policy,) = [a["content"] for t, a in elements.elements if a.get("http-equiv") == "Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives["default-src"] == "'self'"
    assert directives["connect-src"] == "'self'" and directives["img-src"].startswith("'self'")
    hashes = set(re.findall(r"'sha256-([^']+)'", directives["script-src"]))
    expected = {base64.b64encode(hashlib.sha256(s.encode()).digest()).decode() for s in elements.inline_scripts}
    assert len(elements.inline_scripts) >= 1 and hashes == expected
    assert "'unsafe-inline'" not in directives["script-src"] and "'unsafe-eval'" not in directives["script-src"]


def test_elements_of_other_hosts_go_whatever_their_form_and_the_page_s_own_stay() -> None:
    head = """<html><head>
    <link rel="stylesheet" href="//cdn.example.test/a.css">
    <link
      href='https://fonts.example.test/b.css' rel="stylesheet"
    />
    <SCRIPT src="http://cdn.example.test/c.js"></SCRIPT>
    <script type="module" crossorigin src="/assets/index.js"></script>
    <link rel="icon" href="/favicon" />
    <script>const global = globalThis;</script>
    </head><body><div id="root"></div></body></html>"""
    page = same_origin_page(head)
    assert page.dropped == (
        "//cdn.example.test/a.css",
        "https://fonts.example.test/b.css",
        "http://cdn.example.test/c.js",
    )
    for kept in ('src="/assets/index.js"', 'href="/favicon"', "const global = globalThis;", '<div id="root">'):
        assert kept in page.html
    assert "example.test" not in page.html


def test_a_page_it_cannot_read_is_refused_rather_than_served_without_a_policy() -> None:
    with pytest.raises(RuntimeError, match="chainlit_fixes needs updating"):
        same_origin_page("<html><body>no head</body></html>")
