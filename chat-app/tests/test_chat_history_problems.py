"""A history database the chat cannot use: it says so (each new chat, /readyz, the metric) and keeps answering.

The Docker cases (a read-only volume, a full disk) are in tests/e2e/test_history.py; these need no Docker: a
database written by a newer release, a PostgreSQL database switched to read-only, and one that starts after the
chat (as in a Swarm stack, which cannot order services).
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from chat_support import ChatProcess, PacedUpstream, connected, start_chat

from foundry_chat.database import CURRENT_VERSION
from tests.support.postgres import PostgresServer
from tests.support.process import free_port, log_events, wait_until
from tests.support.relay import tcp_relay

pytestmark = pytest.mark.integration


def started(tmp: Path, paced: PacedUpstream, **env: str) -> ChatProcess:
    chat = start_chat(tmp, [paced.url], **env)
    chat.wait_healthy()
    return chat


def first_visit(chat: ChatProcess) -> list[str]:
    async def visit() -> list[str]:
        async with connected(chat.url) as client:
            reply = await client.ask("hello?")
        return [*client.started.texts(), reply.final_text()]

    return asyncio.run(visit())


def assert_history_off_and_still_answering(chat: ChatProcess, problem: str) -> None:
    history = chat.get("/readyz").json()["history"]
    assert history["ok"] is False and problem in history["problem"], history
    assert chat.metric("chat_history_up") == 0
    texts = first_visit(chat)
    notices = [text for text in texts if text.startswith("_History is off:")]
    assert notices and problem in notices[0], texts
    assert "tok0" in texts[-1], "answers still work"
    assert chat.get("/healthz").status_code == 200
    events = log_events(chat.log_path)
    assert any(e.get("event") == "history_off" for e in events)
    assert "Traceback" not in chat.log()


def test_a_database_from_a_newer_release_is_left_alone_and_said(
    paced: PacedUpstream, tmp_path_factory: pytest.TempPathFactory
) -> None:
    tmp = tmp_path_factory.mktemp("newer")
    first = started(tmp, paced)  # makes the schema
    first.stop()
    database = tmp / "data" / "chat.db"
    with sqlite3.connect(database) as db:
        db.execute("UPDATE schema_version SET version = ?", (CURRENT_VERSION + 1,))
    chat = started(tmp, paced)
    try:
        assert_history_off_and_still_answering(chat, "newer than this release knows")
    finally:
        chat.stop()
    with sqlite3.connect(database) as db:
        assert db.execute("SELECT version FROM schema_version").fetchall() == [(CURRENT_VERSION + 1,)], "untouched"


def test_a_read_only_postgresql_database_is_said(
    paced: PacedUpstream, postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> None:
    name = f"readonly_{uuid.uuid4().hex[:12]}"
    url = postgres.create_database(name)
    first = started(tmp_path_factory.mktemp("pg-first"), paced, DATABASE_URL=url)
    first.stop()

    async def make_read_only() -> None:
        import asyncpg

        conn = await asyncpg.connect(postgres.url)
        await conn.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
        await conn.close()

    asyncio.run(make_read_only())
    chat = started(tmp_path_factory.mktemp("pg-read-only"), paced, DATABASE_URL=url)
    try:
        assert_history_off_and_still_answering(chat, "read-only")
    finally:
        chat.stop()


def test_a_database_that_starts_after_the_chat_is_waited_for(
    paced: PacedUpstream, postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> None:
    url = urlsplit(postgres.create_database(f"late_{uuid.uuid4().hex[:12]}"))
    late_port = free_port()
    late_url = url._replace(netloc=url.netloc.replace(f":{url.port}", f":{late_port}")).geturl()
    tmp = tmp_path_factory.mktemp("late")
    chat = start_chat(tmp, [paced.url], DATABASE_URL=late_url, DATABASE_WAIT_SECONDS="60")
    try:
        wait_until(
            lambda: any(e.get("event") == "history_waiting" for e in log_events(chat.log_path)),
            timeout=60,
            what="the chat saying it waits for its database",
        )
        with pytest.raises(httpx.ConnectError):
            chat.get("/healthz")  # no replica takes users before its history works
        with tcp_relay((url.hostname, url.port), listen=("127.0.0.1", late_port)):
            chat.wait_healthy()
            assert chat.get("/readyz").json()["history"]["ok"] is True
            assert chat.metric("chat_history_up") == 1
            assert "tok0" in first_visit(chat)[-1]
    finally:
        chat.stop()


def test_a_database_that_never_comes_is_said_after_the_wait(
    paced: PacedUpstream, tmp_path_factory: pytest.TempPathFactory
) -> None:
    url = f"postgresql://chat:secret@127.0.0.1:{free_port()}/chat"
    chat = started(tmp_path_factory.mktemp("never"), paced, DATABASE_URL=url, DATABASE_WAIT_SECONDS="1")
    try:
        assert_history_off_and_still_answering(chat, "cannot be reached")
    finally:
        chat.stop()
