"""The chat's history in the Compose stack: kept across a restart, a crash mid-answer and `down`/`up`; and what
the user sees when its database is read-only or its disk is full.

A stack of its own (the embedded Foundry Local, the router, the chat service; SQLite on the chat-data volume).
The bad databases are real: the same volume mounted read-only, and a tmpfs filled to the last byte, each behind a
second chat container (`docker run` of the stack's image on its network).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from chat_support import ChainlitClient, browser_cookies, connected

from tests.e2e.stack import TINY_MODEL, TINY_MODEL_NAME, Stack
from tests.support.docker import crash, docker, health, inspect, running_container, throttled
from tests.support.process import free_port, wait_until

pytestmark = pytest.mark.e2e

CHECKPOINT_SECONDS = 0.5
# Long enough to stream for seconds at a fifth of a CPU, short enough to fit the tiny model's 4096-token context
# beside the earlier turns.
LONG_ANSWER = {"model": TINY_MODEL, "max_tokens": 3600}
# Reads the chat's SQLite database from inside its container (read-only: it never competes with the service).
READ_DB = """
import json, sqlite3, sys
db = sqlite3.connect('file:/app/data/chat.db?mode=ro', uri=True)
if sys.argv[1] == 'check':
    print(json.dumps(db.execute('PRAGMA integrity_check').fetchall()))
else:
    rows = db.execute("SELECT type, output, metadata FROM steps WHERE thread_id = ? ORDER BY created_at, seq",
                      (sys.argv[1],)).fetchall()
    print(json.dumps(rows))
"""


@pytest.fixture(scope="module")
def history(offline_images: float, tiny_model: Path, artifacts: Path) -> Iterator[Stack]:
    stack = Stack.create(
        f"fs-history-{uuid.uuid4().hex[:8]}",
        # The tiny model: its answers run to max_tokens, seconds of streaming to restart the chat in the middle of.
        OFFLINE_MODEL_DIR=str(tiny_model),
        OFFLINE_MODEL_NAME=TINY_MODEL_NAME,
        FOUNDRY_LOCAL_URLS="http://foundry-local:5273/v1",
        MODEL=TINY_MODEL,
        MAX_TOKENS="16",
        CHECKPOINT_SECONDS=str(CHECKPOINT_SECONDS),
    )
    stack.down(volumes=True)
    try:
        stack.compose("up", "--detach", "--wait", "foundry-local", "router", "chat-app", timeout=600)
        stack.wait_chat_ready(TINY_MODEL)
        yield stack
    finally:
        (artifacts / f"e2e-{stack.project}.log").write_text(stack.logs(tail=400))
        stack.down(volumes=True)


def stored_steps(stack: Stack, thread_id: str) -> list[tuple[str, str, dict]]:
    out = docker("exec", stack.container("chat-app"), "python", "-c", READ_DB, thread_id).stdout
    return [(kind, text, json.loads(metadata)) for kind, text, metadata in json.loads(out)]


def conversation(stack: Stack, thread_id: str, cookies: dict[str, str], answers: int = 0) -> list[tuple[str, str]]:
    """The thread as the sidebar gets it (REST, the same login): questions and answers, in order; once it holds
    `answers` answers (the history stores them a few milliseconds after they have streamed)."""
    found: list[tuple[str, str]] = []

    def stored() -> bool:
        with httpx.Client(base_url=stack.url("chat-app"), cookies=cookies, timeout=30) as http:
            response = http.get(f"/project/thread/{thread_id}")
        assert response.status_code in {200, 404}, response.text
        steps = response.json()["steps"] if response.status_code == 200 else []
        found[:] = [
            (step["type"], step["output"])
            for step in steps
            if step["type"] == "user_message" or "answer" in (step.get("metadata") or {})
        ]
        return response.status_code == 200 and sum(kind == "assistant_message" for kind, _ in found) >= answers

    wait_until(stored, 30, f"{answers} answers in thread {thread_id}", interval=0.1)
    return found


async def ask_all(url: str, questions: list[str], thread_id: str = "") -> str:
    async with connected(url, thread_id=thread_id) as client:
        for question in questions:
            reply = await client.ask(question)
            assert TINY_MODEL in reply.final_text(), reply.texts()
    return client.thread_id


def wait_healthy(container: str) -> None:
    wait_until(lambda: health(container) == "healthy", 120, "the chat service healthy", interval=0.5)


def test_threads_survive_a_restart_a_crash_mid_answer_and_down_up(history: Stack) -> None:
    url = history.url("chat-app")
    cookies = asyncio.run(browser_cookies(url))
    thread_id = asyncio.run(ask_all(url, ["first question", "second question"]))
    before = conversation(history, thread_id, cookies, answers=2)
    assert [kind for kind, _ in before] == ["user_message", "assistant_message"] * 2

    # 1. `docker compose restart`: the same threads, and the same login (its key is on the volume too).
    history.compose("restart", "chat-app")
    wait_healthy(history.container("chat-app"))
    assert conversation(history, thread_id, cookies) == before

    # 2. SIGKILL while an answer streams: every finished turn stays, the cut answer is stored as interrupted.
    container = history.container("chat-app")
    restarts = inspect(container)["RestartCount"]

    def partial_answer_stored() -> bool:
        steps = stored_steps(history, cut_thread["id"])
        return any(meta.get("answer", {}).get("text_chars") for _, _, meta in steps)

    cut_thread: dict[str, str] = {}

    async def cut_off() -> None:
        client = ChainlitClient(url, thread_id=thread_id)
        await client.connect()
        await client.change_settings(LONG_ANSWER)
        cut_thread["id"] = thread_id
        disconnected = asyncio.Event()
        client.sio.on("disconnect", disconnected.set)

        async def kill_once_saved() -> None:
            await asyncio.to_thread(wait_until, partial_answer_stored, 30, "a checkpoint of the answer")
            await asyncio.to_thread(crash, container)

        asking = asyncio.create_task(client.ask("tell me a very long story", on_first_token=kill_once_saved))
        await asyncio.wait_for(disconnected.wait(), 60)
        asking.cancel()  # the answer never ends: its process is gone

    with throttled(history.container("foundry-local"), 0.2):
        asyncio.run(cut_off())
    wait_until(lambda: inspect(container)["RestartCount"] > restarts, 60, "Docker restarting the chat service")
    wait_healthy(container)
    check = docker("exec", container, "python", "-c", READ_DB, "check").stdout
    assert json.loads(check) == [["ok"]], "the database opens cleanly after the crash"
    after = conversation(history, thread_id, cookies)
    assert after[:4] == before, "every finished turn is still there"
    assert after[4] == ("user_message", "tell me a very long story")
    kind, text = after[5]
    record = next(meta["answer"] for k, t, meta in stored_steps(history, thread_id) if t == text and "answer" in meta)
    assert kind == "assistant_message" and text and record["outcome"] == "interrupted"

    # 3. `down` and `up` (the volume stays): the threads are kept; the conversation continues where it was.
    history.compose("down", "--timeout", "20")
    history.compose("up", "--detach", "--wait", "foundry-local", "router", "chat-app", timeout=600)
    history.wait_chat_ready(TINY_MODEL)
    assert conversation(history, thread_id, cookies) == after
    asyncio.run(ask_all(url, ["and one more"], thread_id=thread_id))
    assert conversation(history, thread_id, cookies, answers=4)[-2] == ("user_message", "and one more")


@contextmanager
def second_chat(stack: Stack, *mount: str) -> Iterator[tuple[str, str]]:
    """Another chat container of the stack's image on its network, with `mount` as its /app/data."""
    port = free_port()
    image = inspect(stack.container("chat-app"))["Config"]["Image"]
    with running_container(
        "--network", stack.network, "--publish", f"127.0.0.1:{port}:8080", "--read-only",
        "--tmpfs", "/tmp", "--tmpfs", "/app:uid=10001,gid=10001", *mount,  # noqa: S108 (the container's /tmp)
        "--env", "ROUTER_URL=http://router:4000/v1", "--env", f"MODEL={TINY_MODEL}", image,
    ) as (name, _):  # fmt: skip
        assert health(name) == "healthy", docker("logs", name, check=False).stderr[-3000:]
        yield f"http://127.0.0.1:{port}", name


def test_a_read_only_database_turns_the_history_off_in_words_and_the_chat_still_answers(history: Stack) -> None:
    url = history.url("chat-app")
    thread_id = asyncio.run(ask_all(url, ["kept while read-only"]))
    conversation(history, thread_id, asyncio.run(browser_cookies(url)), answers=1)
    with second_chat(history, "--volume", f"{history.project}_chat-data:/app/data:ro") as (chat_url, name):
        ready = httpx.get(f"{chat_url}/readyz", timeout=10).json()
        assert "read-only" in ready["history"]["problem"] or "cannot be" in ready["history"]["problem"], ready

        async def visit() -> list[str]:
            async with connected(chat_url) as client:
                reply = await client.ask("does it still answer?")
            return [*client.started.texts(), reply.final_text()]

        texts = asyncio.run(visit())
        assert any(text.startswith("_History is off:") for text in texts), texts
        assert TINY_MODEL in texts[-1], "answers still work"
        logged = docker("logs", name, check=False).stdout
        assert '"event": "history_off"' in logged and "Traceback" not in logged
    cookies = asyncio.run(browser_cookies(url))
    assert conversation(history, thread_id, cookies)[0] == ("user_message", "kept while read-only")


def test_a_full_disk_is_said_in_words_and_what_was_stored_stays(history: Stack) -> None:
    with second_chat(history, "--tmpfs", "/app/data:size=2m,uid=10001,gid=10001") as (chat_url, name):
        thread: dict[str, str] = {}

        async def visit() -> list[str]:
            async with connected(chat_url) as client:
                stored = await client.ask("stored before the disk filled up")
                thread["id"] = client.thread_id
                cookies = dict(client.cookies or {})
                thread["cookie"] = cookies["access_token"]
                # Fill the volume to the last byte, as another program might.
                await asyncio.to_thread(docker, "exec", name, "python", "-c", FILL_DISK)
                reply = await client.ask("and this one?")
                # The history's verdict comes after the answer (which never waits for the database).
                notice = await next_text(client, "could not be saved")
            return [stored.final_text(), *reply.texts(), notice]

        texts = asyncio.run(visit())
        assert TINY_MODEL in texts[0]
        notices = [text for text in texts if "could not be saved" in text]
        assert notices and "disk is full" in notices[0] and "free some space" in notices[0], texts
        assert any(TINY_MODEL in text for text in texts[1:]), "the answer still came"
        with httpx.Client(base_url=chat_url, cookies={"access_token": thread["cookie"]}, timeout=10) as http:
            kept = http.get(f"/project/thread/{thread['id']}").json()
        assert any(step["output"] == "stored before the disk filled up" for step in kept["steps"])
        assert httpx.get(f"{chat_url}/healthz", timeout=5).status_code == 200
        logged = docker("logs", name, check=False).stdout
        assert '"event": "history_write_failed"' in logged and "Traceback" not in logged


async def next_text(client: ChainlitClient, words: str) -> str:
    while True:
        step = await client.next_event("new_message")
        if isinstance(step, dict) and words in step.get("output", ""):
            return step["output"]


FILL_DISK = """
try:
    with open('/app/data/filler', 'wb') as filler:
        while True:
            filler.write(b'0' * 4096)
            filler.flush()
except OSError:  # No space left on device: full, as wanted
    pass
"""
