"""The history's data layer against real databases: SQLite and PostgreSQL (Debian's server, tests/support/postgres.py).

The layer is driven as Chainlit drives it: every write is its own task, started in the order the chat issues them.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from chainlit.context import init_http_context
from chainlit.types import Feedback, Pagination, ThreadFilter
from chainlit.user import User

from foundry_chat.data_layer import ChatDataLayer
from foundry_chat.database import (
    CURRENT_VERSION,
    SchemaTooNew,
    create_engine,
    database_url,
    describe,
    migrate,
    schema_version,
)
from foundry_chat.database import steps as steps_table
from foundry_chat.metrics import ChatMetrics
from foundry_chat.transcript import answer_record, turns_from_steps
from foundry_chat.write_queue import WriteQueue
from tests.support.postgres import PostgresServer

SESSIONS = 32
TURNS = 5


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return database_url(None, str(tmp_path / "data"))
    server: PostgresServer = request.getfixturevalue("postgres")
    return database_url(server.create_database(f"store_{uuid.uuid4().hex[:12]}"), "")


def with_layer(url: str, body: Callable[[ChatDataLayer], Awaitable[None]]) -> None:
    """Run `body` with a data layer on a migrated database."""

    async def main() -> None:
        init_http_context()  # outside a browser session Chainlit writes at once (no queue until the first message)
        engine = create_engine(url)
        await migrate(engine)
        store = ChatDataLayer(engine, ChatMetrics())
        try:
            await body(store)
        finally:
            await store.close()

    asyncio.run(main())


def step(thread_id: str, kind: str, text: str, **extra: object) -> dict:
    from chainlit.utils import utc_now

    return {"id": str(uuid.uuid4()), "threadId": thread_id, "type": kind, "name": kind, "output": text,
            "createdAt": utc_now(), "metadata": {}, **extra}  # fmt: skip


async def a_user(layer: ChatDataLayer, name: str) -> str:
    persisted = await layer.create_user(User(identifier=name))
    assert persisted is not None
    return persisted.id


@pytest.mark.integration
def test_the_schema_is_created_once_and_upgrading_again_does_nothing(url: str) -> None:
    async def body() -> None:
        engine = create_engine(url)
        try:
            assert await migrate(engine) == [f"{CURRENT_VERSION}: users, threads, steps and feedbacks"]
            assert await migrate(engine) == [], "a second start finds the schema current"
            async with engine.connect() as conn:
                versions = (await conn.execute(sa.select(schema_version.c.version))).scalars().all()
            assert versions == [CURRENT_VERSION]
        finally:
            await engine.dispose()

    asyncio.run(body())


@pytest.mark.integration
def test_a_schema_newer_than_the_code_is_refused_in_words(url: str) -> None:
    async def body() -> None:
        engine = create_engine(url)
        try:
            await migrate(engine)
            async with engine.begin() as conn:
                await conn.execute(schema_version.update().values(version=CURRENT_VERSION + 1))
            with pytest.raises(SchemaTooNew, match=r"schema version 2, newer than this release knows \(1\)"):
                await migrate(engine)
        finally:
            await engine.dispose()

    asyncio.run(body())


@pytest.mark.unit
def test_the_database_url_names_the_driver_and_hides_the_password() -> None:
    assert database_url(None, "/srv/data") == "sqlite+aiosqlite:////srv/data/chat.db"
    pg = database_url("postgres://chat:pw@db:5432/chat", "")
    assert pg == "postgresql+asyncpg://chat:pw@db:5432/chat"
    assert describe(pg) == "postgresql+asyncpg://chat:***@db:5432/chat"
    with pytest.raises(ValueError, match="DATABASE_URL names 'mysql'"):
        database_url("mysql://db/chat", "")


async def converse(layer: ChatDataLayer, thread_id: str, user_id: str, session: int) -> None:
    """Five turns as the chat writes them: the question, checkpoints of the answer, the final answer."""
    await layer.update_thread(thread_id, name=f"session {session}", user_id=user_id)
    for turn in range(TURNS):
        question = step(thread_id, "user_message", f"s{session} q{turn}")
        writes = [layer.create_step(question)]
        answer = step(thread_id, "assistant_message", "", metadata=answer_record(None, "", "interrupted"))
        for part in range(1, 4):
            checkpoint = dict(answer, output=f"s{session} a{turn} part{part}")
            writes.append(layer.update_step(checkpoint))
        final_text = f"s{session} a{turn}"
        writes.append(
            layer.update_step(dict(answer, output=final_text, metadata=answer_record(None, final_text, "ok")))
        )
        # As Chainlit does: each write a task of its own, none awaited before the next starts.
        tasks = [asyncio.create_task(write) for write in writes]
        await asyncio.sleep(0)  # the next turn starts while these still run
        await asyncio.gather(*tasks)


@pytest.mark.integration
def test_32_sessions_of_5_turns_at_once_are_stored_once_each_in_order(url: str) -> None:
    async def body(layer: ChatDataLayer) -> None:
        user_id = await a_user(layer, "alice")
        thread_ids = [str(uuid.uuid4()) for _ in range(SESSIONS)]
        await asyncio.gather(*(converse(layer, t, user_id, n) for n, t in enumerate(thread_ids)))
        for session, thread_id in enumerate(thread_ids):
            thread = await layer.get_thread(thread_id)
            assert thread is not None and thread["userIdentifier"] == "alice"
            outputs = [s["output"] for s in thread["steps"]]
            expected = [text for turn in range(TURNS) for text in (f"s{session} q{turn}", f"s{session} a{turn}")]
            assert outputs == expected, f"thread {session}: every turn once, in order, final text"
            turns = turns_from_steps(thread["steps"])
            assert [t.user for t in turns] == [f"s{session} q{n}" for n in range(TURNS)]
        assert not layer.take_failure(thread_ids[0])
        listed = await layer.list_threads(Pagination(first=50), ThreadFilter(userId=user_id))
        assert {t["id"] for t in listed.data} == set(thread_ids)

    with_layer(url, body)


@pytest.mark.integration
def test_the_thread_list_pages_and_searches(url: str) -> None:
    async def body(layer: ChatDataLayer) -> None:
        user_id = await a_user(layer, "bob")
        ids = []
        for n in range(5):
            thread_id = str(uuid.uuid4())
            ids.append(thread_id)
            await layer.update_thread(thread_id, name=f"topic {n}", user_id=user_id)
            await layer.create_step(step(thread_id, "user_message", f"about {'llamas' if n == 2 else 'ducks'}"))
        first = await layer.list_threads(Pagination(first=2), ThreadFilter(userId=user_id))
        second = await layer.list_threads(
            Pagination(first=2, cursor=first.pageInfo.endCursor), ThreadFilter(userId=user_id)
        )
        rest = await layer.list_threads(
            Pagination(first=2, cursor=second.pageInfo.endCursor), ThreadFilter(userId=user_id)
        )
        pages = [[t["id"] for t in page.data] for page in (first, second, rest)]
        assert pages == [ids[4:2:-1], ids[2:0:-1], ids[0:1]], "newest first, no thread twice or missing"
        assert first.pageInfo.hasNextPage and not rest.pageInfo.hasNextPage
        found = await layer.list_threads(Pagination(first=10), ThreadFilter(userId=user_id, search="LLAMAS"))
        assert [t["id"] for t in found.data] == [ids[2]]

    with_layer(url, body)


@pytest.mark.integration
def test_a_thread_keeps_its_first_owner(url: str) -> None:
    async def body(layer: ChatDataLayer) -> None:
        alice, mallory = await a_user(layer, "alice"), await a_user(layer, "mallory")
        thread_id = str(uuid.uuid4())
        await layer.update_thread(thread_id, name="mine", user_id=alice)
        await layer.update_thread(thread_id, user_id=mallory)
        assert await layer.get_thread_author(thread_id) == "alice"
        assert await layer.get_thread_author(str(uuid.uuid4())) == "", "unknown: Chainlit then answers 404"

    with_layer(url, body)


@pytest.mark.integration
def test_feedback_is_one_rating_per_answer_and_goes_with_its_thread(url: str) -> None:
    async def body(layer: ChatDataLayer) -> None:
        user_id = await a_user(layer, "carol")
        thread_id = str(uuid.uuid4())
        await layer.update_thread(thread_id, user_id=user_id)
        answer = step(thread_id, "assistant_message", "42")
        await layer.create_step(answer)
        first = await layer.upsert_feedback(Feedback(forId=answer["id"], value=1, comment="good"))
        again = await layer.upsert_feedback(Feedback(forId=answer["id"], value=0, comment="on second thought"))
        assert first == again
        (stored,) = (await layer.get_thread(thread_id))["steps"]
        assert stored["feedback"] == {"id": first, "forId": answer["id"], "value": 0, "comment": "on second thought"}
        assert await layer.owner_of_step(answer["id"]) == "carol"
        assert await layer.owner_of_feedback(first) == "carol"
        await layer.delete_thread(thread_id)
        assert await layer.get_thread(thread_id) is None
        assert await layer.owner_of_feedback(first) is None, "deleted with its thread"

    with_layer(url, body)


@pytest.mark.integration
def test_thread_metadata_keeps_the_settings_and_drops_the_live_session(url: str) -> None:
    async def body(layer: ChatDataLayer) -> None:
        thread_id = str(uuid.uuid4())
        await layer.update_thread(thread_id, metadata={"chat_settings": {"temperature": 0.2}, "chat_profile": "Code"})
        await layer.update_thread(thread_id, metadata={"turns": [None], "env": {}, "chat_profile": None})
        thread = await layer.get_thread(thread_id)
        assert thread["metadata"] == {"chat_settings": {"temperature": 0.2}}

    with_layer(url, body)


@pytest.mark.integration
def test_a_long_first_message_makes_a_short_thread_name(url: str) -> None:
    async def body(layer: ChatDataLayer) -> None:
        thread_id = str(uuid.uuid4())
        await layer.update_thread(thread_id, name="word " * 10_000)
        name = (await layer.get_thread(thread_id))["name"]
        assert len(name) == 120 and name.endswith("…")

    with_layer(url, body)


@pytest.mark.integration
def test_one_failing_write_in_a_batch_leaves_the_others_stored(url: str) -> None:
    async def body(layer: ChatDataLayer) -> None:
        thread_id = str(uuid.uuid4())
        failures: list[tuple[str, str]] = []
        queue = WriteQueue(layer.engine, lambda operation, key, exc: failures.append((operation, key)), linger=0.05)
        first, second = step(thread_id, "user_message", "one"), step(thread_id, "user_message", "two")

        async def insert(conn: sa.Connection, row: dict) -> None:
            await layer._ensure_thread(conn, thread_id, row["createdAt"])
            await conn.execute(
                sa.insert(steps_table).values(id=row["id"], thread_id=thread_id, name="u", type="user_message",
                                              output=row["output"], created_at=row["createdAt"], metadata={})
            )  # fmt: skip

        async def broken(conn: sa.Connection) -> None:
            await conn.execute(sa.text("INSERT INTO no_such_table VALUES (1)"))

        results = await asyncio.gather(
            queue.submit("one", thread_id, lambda conn: insert(conn, first)),
            queue.submit("broken", "elsewhere", broken),
            queue.submit("two", thread_id, lambda conn: insert(conn, second)),
        )
        await queue.close()
        assert results == [True, False, True]
        assert failures == [("broken", "elsewhere")]
        outputs = [s["output"] for s in (await layer.get_thread(thread_id))["steps"]]
        assert outputs == ["one", "two"], "stored, in the order they were queued"

    with_layer(url, body)
