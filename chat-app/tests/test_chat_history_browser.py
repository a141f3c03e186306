"""Past chats in Debian's Chromium: the sidebar lists them, a reopened one gives the model its turns back, and the
sidebar's menu renames and deletes them.

Without a password every visitor is the local user (auth.py): the page logs in by itself through /auth/header and
the sidebar (closed by default, chainlit_root.py) lists the history's threads, each named after its first message.
The sidebar's toggle has no accessible name (its "Open sidebar" label is a tooltip), so it is found by its id and
its tooltip is checked; everything else is found by role and visible text. Chainlit's UI offers Rename and Delete
in each thread's "…" menu, so both go through the page; the REST API (`POST /project/threads` with the page's
login cookie) checks what was stored. The prompts the chat sent upstream come from its log (LOG_PROMPTS=true).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from chat_support import ChatProcess, ask_once
from playwright.sync_api import Locator, Page, WebSocket, expect, sync_playwright
from test_chat_browser import CHROMIUM, CHROMIUM_ARGS

from tests.support.process import log_events, wait_until

pytestmark = pytest.mark.browser

ANSWER_TIMEOUT = 30_000
THREAD_URL = re.compile(r"/thread/([0-9a-f-]{36})$")
# Socket.IO's event frames over the page's WebSocket: `42["name", data]`.
EVENT_FRAME = re.compile(r"^42(\[.*\])$", re.DOTALL)


@pytest.fixture(scope="module")
def chat(real_model_chat: ChatProcess) -> ChatProcess:
    """The chat in front of the real model: the picture in the README shows real answers."""
    return real_model_chat


@contextmanager
def chromium_page() -> Iterator[Page]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser.new_page(viewport={"width": 1280, "height": 900})
        finally:
            browser.close()


class StreamedAnswers:
    """The answers as they were streamed to the page (stream_start carries the first token, stream_token the
    rest), in the order they started: the model's own words, without the footer the page adds."""

    def __init__(self, page: Page) -> None:
        self.texts: dict[str, str] = {}
        page.on("websocket", self.watch)

    def watch(self, socket: WebSocket) -> None:
        socket.on("framereceived", self.frame)

    def frame(self, frame: str | bytes) -> None:
        found = EVENT_FRAME.match(frame) if isinstance(frame, str) else None
        if found is None:
            return
        name, data, *_ = [*json.loads(found.group(1)), None]
        if name == "stream_start":
            self.texts[data["id"]] = data.get("output") or ""
        elif name == "stream_token" and data["id"] in self.texts:
            self.texts[data["id"]] += data["token"]

    def in_order(self) -> list[str]:
        return list(self.texts.values())


def finished_answers(page: Page) -> Locator:
    """Answers that have ended: only a finished answer has its footer ("… · N tokens · …")."""
    return page.locator('[data-step-type="assistant_message"]', has_text=" tokens · ")


def ask(page: Page, text: str) -> None:
    """Send a message and wait until its answer has ended and the chat is ready for the next one."""
    before = finished_answers(page).count()
    composer = page.locator("#chat-input")
    expect(composer).to_be_visible(timeout=ANSWER_TIMEOUT)
    composer.click()
    page.keyboard.type(text)
    submit = page.locator("#chat-submit")
    expect(submit).to_be_enabled()
    submit.click()
    expect(finished_answers(page)).to_have_count(before + 1, timeout=ANSWER_TIMEOUT)
    # The stop button shows while the task runs: gone once the task (with the thread's saving) has ended.
    expect(page.locator("#stop-button")).to_have_count(0, timeout=ANSWER_TIMEOUT)
    expect(submit).to_be_visible()


def open_sidebar(page: Page) -> Locator:
    """Open the (closed by default) sidebar with the header's toggle; returns the list of past threads."""
    threads = page.locator("#thread-history")
    expect(threads).to_be_attached(timeout=ANSWER_TIMEOUT)
    expect(threads).not_to_be_in_viewport()
    toggle = page.locator("#header #sidebar-trigger-button")
    toggle.hover()
    expect(page.get_by_role("tooltip")).to_have_text("Open sidebar")
    toggle.click()
    expect(threads).to_be_in_viewport(ratio=1)
    return threads


def thread_link(threads: Locator, name: str) -> Locator:
    return threads.get_by_role("link", name=name, exact=True)


def thread_id_of(link: Locator) -> str:
    href = link.get_attribute("href") or ""
    found = THREAD_URL.search(href)
    assert found, f"a thread's link goes to /thread/ID, not {href!r}"
    return found.group(1)


def open_thread_menu(threads: Locator, name: str) -> None:
    """The "…" button of a thread (shown on hover) opens its menu."""
    link = thread_link(threads, name)
    link.hover()
    link.locator("#thread-options").click()


def stored_threads(page: Page, url: str) -> dict[str, str]:
    """The local user's threads, by id, with their names: what Chainlit's REST API says, with the page's login."""
    cookies = {c["name"]: c["value"] for c in page.context.cookies() if c["name"] == "access_token"}
    assert cookies, "the page logged in by itself (the local user's access_token cookie)"
    response = httpx.post(
        f"{url}/project/threads", json={"pagination": {"first": 20}, "filter": {}}, cookies=cookies, timeout=10
    )
    response.raise_for_status()
    return {thread["id"]: thread["name"] for thread in response.json()["data"]}


def prompt_ending_with(chat: ChatProcess, question: str) -> dict:
    """The "prompt" event the chat logged for the message `question` (its last message)."""
    found: list[dict] = []

    def logged() -> bool:
        found[:] = [
            event
            for event in log_events(chat.log_path)
            if event.get("event") == "prompt" and event["messages"][-1] == {"role": "user", "content": question}
        ]
        return bool(found)

    wait_until(logged, 10, f"the chat to log the prompt for {question!r}")
    assert len(found) == 1, f"one prompt for {question!r}, not {len(found)}"
    return found[0]


def test_a_past_chat_is_listed_reopened_and_its_turns_go_back_to_the_model(chat: ChatProcess, artifacts: Path) -> None:
    """Two questions, a reload, then the thread is opened again from the sidebar: the page shows both questions and
    both answers, and the third question goes upstream after the first two turns, in order, as the live chat would
    have sent it. The picture (the sidebar open on a few threads) is test-artifacts/chat-history.png, which
    scripts/update-screenshots copies to docs/images/ for the README."""
    # Older chats, so that the sidebar lists a few and the right one must be picked.
    older_chats = ("Summarise the benefits of running language models locally.", "Give me five names for a chat.")
    for text in older_chats:
        assert " tokens · " in ask_once(chat.url, text).final_text()
    first, second, third = (
        "Explain what a context window is, in three sentences.",
        "And how large is yours?",
        "Say that again, shorter.",
    )
    with chromium_page() as page:
        streamed = StreamedAnswers(page)
        page.goto(chat.url)
        ask(page, first)
        ask(page, second)
        questions = page.locator('[data-step-type="user_message"]')
        answers = page.locator('[data-step-type="assistant_message"]')
        expect(questions).to_have_text([first, second])
        expect(answers).to_have_count(2)
        shown = answers.all_inner_texts()
        # The page's address names the conversation once it has started.
        expect(page).to_have_url(THREAD_URL, timeout=10_000)
        thread_id = THREAD_URL.search(page.url).group(1)

        page.reload()
        expect(questions).to_have_text([first, second], timeout=ANSWER_TIMEOUT)
        expect(answers).to_have_text(shown, use_inner_text=True)

        # A new chat (the page opened afresh), then the conversation again from the sidebar.
        page.goto(chat.url)
        expect(page.locator("#chat-input")).to_be_visible(timeout=ANSWER_TIMEOUT)
        expect(questions).to_have_count(0)
        threads = open_sidebar(page)
        link = thread_link(threads, first)
        expect(link).to_be_visible()
        for older in older_chats:
            expect(thread_link(threads, older)).to_be_visible()
        assert thread_id_of(link) == thread_id
        link.click()
        expect(page).to_have_url(THREAD_URL)
        assert THREAD_URL.search(page.url).group(1) == thread_id
        expect(questions).to_have_text([first, second], timeout=ANSWER_TIMEOUT)
        expect(answers).to_have_text(shown, use_inner_text=True)

        ask(page, third)
        expect(questions).to_have_text([first, second, third])
        # Opening a thread closed the sidebar (Chainlit's thread page starts it closed again): open it for the picture,
        # with the conversation from its start (the page scrolls the latest question to the top).
        open_sidebar(page)
        questions.first.scroll_into_view_if_needed()
        page.screenshot(path=str(artifacts / "chat-history.png"), animations="disabled")

    assert len(streamed.in_order()) == 3, "three answers were streamed to the page (a resumed thread is not)"
    one, two, _ = streamed.in_order()
    assert one and two
    opening = prompt_ending_with(chat, first)["messages"]
    resumed = prompt_ending_with(chat, third)["messages"]
    system = [m for m in opening if m["role"] == "system"]
    assert resumed == [
        *system,
        {"role": "user", "content": first},
        {"role": "assistant", "content": one},
        {"role": "user", "content": second},
        {"role": "assistant", "content": two},
        {"role": "user", "content": third},
    ]
    # Not the live session's memory: the turns were rebuilt from the stored thread.
    resumes = [e for e in log_events(chat.log_path) if e.get("event") == "thread_resumed"]
    assert {"thread_id": thread_id, "turns": 2} in [{k: e.get(k) for k in ("thread_id", "turns")} for e in resumes]


def test_the_sidebar_menu_renames_and_deletes_a_thread(chat: ChatProcess) -> None:
    """Rename one thread and delete another through each thread's "…" menu; the API then lists the new name and
    not the deleted thread, and the other thread is untouched."""
    tag = uuid.uuid4().hex[:8]
    keep, drop, renamed = f"Keep this chat {tag}", f"Delete this chat {tag}", f"Renamed chat {tag}"
    for text in (keep, drop):
        assert " tokens · " in ask_once(chat.url, text).final_text()
    with chromium_page() as page:
        page.goto(chat.url)
        threads = open_sidebar(page)
        expect(thread_link(threads, keep)).to_be_visible()
        expect(thread_link(threads, drop)).to_be_visible()
        keep_id, drop_id = thread_id_of(thread_link(threads, keep)), thread_id_of(thread_link(threads, drop))
        before = stored_threads(page, chat.url)
        assert before[keep_id] == keep and before[drop_id] == drop

        open_thread_menu(threads, keep)
        page.get_by_role("menuitem", name="Rename").click()
        dialog = page.get_by_role("dialog", name="Rename Thread")
        expect(dialog.get_by_label("Name")).to_have_value(keep)
        dialog.get_by_label("Name").fill(renamed)
        dialog.get_by_role("button", name="Confirm").click()
        expect(dialog).to_have_count(0)
        expect(thread_link(threads, renamed)).to_be_visible()
        expect(thread_link(threads, keep)).to_have_count(0)
        assert thread_id_of(thread_link(threads, renamed)) == keep_id

        open_thread_menu(threads, drop)
        page.get_by_role("menuitem", name="Delete").click()
        confirm = page.get_by_role("alertdialog", name="Confirm deletion")
        confirm.get_by_role("button", name="Confirm").click()
        expect(confirm).to_have_count(0)
        expect(thread_link(threads, drop)).to_have_count(0)
        expect(thread_link(threads, renamed)).to_be_visible()

        after = stored_threads(page, chat.url)
    assert after[keep_id] == renamed
    assert drop_id not in after
    others = before.keys() - {keep_id, drop_id}
    assert {i: after.get(i) for i in others} == {i: before[i] for i in others}
