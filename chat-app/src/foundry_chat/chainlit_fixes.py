"""Workarounds for Chainlit 2.12 behaviour that hurts users: blocking sleeps, long messages cutting the line, and a
page that loads from other hosts.

`chainlit.Message.__init__` and `chainlit.Step.__init__` call `time.sleep(0.001)`: a blocking sleep on the
event loop, three per user message (the user's message, the on_message step, the reply). With 32
sessions sending at once that stalls every stream for ~100 ms (measured with `scripts/bench chat`).
Those modules use `time` for nothing else, so they get a `time` whose sleep does not block. Timestamps
keep microsecond resolution, so messages still sort in the order they were created.
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import re
import types
from dataclasses import dataclass
from urllib.parse import urlsplit


def remove_blocking_sleeps() -> None:
    no_sleep = types.SimpleNamespace(sleep=lambda seconds: None)
    # By module path: the package's `chainlit.step` attribute is the step decorator, not the module.
    for name in ("chainlit.message", "chainlit.step"):
        importlib.import_module(name).time = no_sleep  # type: ignore[attr-defined]


# Engine.IO closes the connection on a message over its 1 MB default: the page then only says it lost the server.
# A bigger cap lets a too-long message reach the chat, which refuses it in words (MAX_INPUT_CHARS).
MAX_SOCKET_MESSAGE_BYTES = 16 * 2**20


def accept_long_messages() -> None:
    from chainlit.server import sio

    sio.eio.max_http_buffer_size = MAX_SOCKET_MESSAGE_BYTES


# Chainlit's page (frontend/dist/index.html) loads Inter from Google Fonts and KaTeX's CSS from a CDN: each visit
# would tell those hosts about the chat, and "nothing leaves the machine" would be false. LaTeX is off
# (chainlit_root.py) and the page falls back to the system's fonts, so every element that loads from another origin
# goes, whatever a new Chainlit version adds (test_chat_same_origin.py says when it adds one, to check the page
# still works). The page then declares that it loads only from its own origin (CSP): images in a model's Markdown
# answer, for one, are not fetched from other hosts either.
FOREIGN_ELEMENT = re.compile(r"<(link|script)\b[^>]*>(?:\s*</script>)?", re.IGNORECASE)
URL_ATTRIBUTE = re.compile(r"""\b(?:href|src)\s*=\s*["']?([^"'\s>]+)""", re.IGNORECASE)
INLINE_SCRIPT = re.compile(r"<script\b(?![^>]*\bsrc\s*=)[^>]*>(.*?)</script>", re.IGNORECASE | re.DOTALL)
# Inter when the system has it, else the system's own sans-serif (Chainlit's CSS says "Inter", sans-serif).
# `html:root` outranks Chainlit's `:root`, which comes later in the page.
FONT_STYLE = (
    '<style>html:root{--font-sans: "Inter", system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", '
    '"Helvetica Neue", Arial, sans-serif}</style>'
)
# Styles may be inline (the page's components add <style> elements); what they load is still held to 'self'.
CSP = (
    "default-src 'self'; script-src 'self' {scripts}; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; font-src 'self' data:; media-src 'self' data: blob:; connect-src 'self'; "
    "worker-src 'self' blob:; object-src 'none'; base-uri 'self'; form-action 'self'"
)


@dataclass(frozen=True)
class SameOriginPage:
    html: str
    # The URLs of the elements taken out.
    dropped: tuple[str, ...]


def same_origin_page(html: str) -> SameOriginPage:
    """Chainlit's page without the elements that load from another origin, with a fallback font and a CSP."""
    dropped: list[str] = []

    def keep_local(element: re.Match[str]) -> str:
        url = URL_ATTRIBUTE.search(element.group(0))
        if url is None or not urlsplit(url.group(1)).netloc:  # a path of this origin ("/assets/…")
            return element.group(0)
        dropped.append(url.group(1))
        return ""

    html = FOREIGN_ELEMENT.sub(keep_local, html)
    # Hashes, not 'unsafe-inline': the page's own inline scripts run (Chainlit writes them), no injected one would.
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()}'"
        for body in INLINE_SCRIPT.findall(html)
    )
    meta = f'<meta http-equiv="Content-Security-Policy" content="{CSP.format(scripts=hashes)}" />'
    if html.count("<head>") != 1 or html.count("</head>") != 1:
        raise RuntimeError("Chainlit's index.html has no single <head>: foundry_chat.chainlit_fixes needs updating")
    # The policy first: it covers only what comes after it.
    html = html.replace("<head>", f"<head>\n    {meta}", 1).replace("</head>", f"  {FONT_STYLE}\n  </head>", 1)
    return SameOriginPage(html, tuple(dropped))


def keep_the_page_on_this_machine() -> None:
    """Every page Chainlit serves (its one index.html, for every path of the UI) goes through same_origin_page."""
    import chainlit.server

    original = chainlit.server.get_html_template  # looked up by its route at each request
    if getattr(original, "same_origin", False):
        return

    def page(root_path: str) -> str:
        return same_origin_page(original(root_path)).html

    page.same_origin = True  # type: ignore[attr-defined]
    chainlit.server.get_html_template = page
