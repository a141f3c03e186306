"""Chainlit's data layer over our own tables (database.py): users, threads, steps and feedback.

Why not Chainlit's SQLAlchemyDataLayer: it swallows database errors (a failed write is a log line, never a
message to the user), its `tags` list cannot be bound on SQLite (threads then never get a name or an owner),
its steps are ordered by a text timestamp alone, its writes race each other (Chainlit fires them as separate
tasks), and it has no schema migrations. ChainlitDataLayer is PostgreSQL-only. This one keeps their interface
(BaseDataLayer) and fixes those:

- Writes run one at a time, in the order Chainlit issued them, a burst of them in one transaction
  (`write_queue.WriteQueue`).
- Steps are read back by (created_at, seq): `seq` is the insertion order.
- A failed write is logged, counted (`chat_history_write_failures_total`) and remembered for its thread, so the
  chat can tell the user (`take_failure`); nothing stored before is touched. A failed read answers 503 with
  the reason instead of a traceback.
- A thread's owner is set once and never changed; `get_thread_author` answers "" for an unknown thread (404).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
import structlog
from chainlit.data.base import BaseDataLayer
from chainlit.data.utils import queue_until_user_message
from chainlit.types import Feedback, PageInfo, PaginatedResponse, Pagination, ThreadDict, ThreadFilter
from chainlit.user import PersistedUser, User
from chainlit.utils import utc_now
from fastapi import HTTPException
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from foundry_chat.database import explain, feedbacks, steps, threads, users
from foundry_chat.metrics import ChatMetrics
from foundry_chat.write_queue import Statements, Work, WriteQueue

log = structlog.get_logger("foundry_chat.history")

THREAD_NAME_CHARS = 120
# A step's text is kept up to this: longer ones are messages the chat refused (MAX_INPUT_CHARS is far below), and
# storing megabytes would only slow every load of the thread.
STEP_TEXT_CHARS = 100_000
# What a thread's metadata keeps. Chainlit writes the whole user session there at disconnect; most of it is
# the live session's (our turns, tasks), rebuilt from the steps on resume, and only bloats the row.
THREAD_METADATA_KEYS = {"chat_profile", "chat_settings", "client_type", "is_shared", "shared_at"}
# Step fields Chainlit sends that we keep; everything else in a StepDict (streaming, waitForAnswer…) is transient.
STEP_COLUMNS = {
    "parentId": "parent_id",
    "name": "name",
    "type": "type",
    "input": "input",
    "output": "output",
    "start": "start",
    "end": "end",
    "isError": "is_error",
    "language": "language",
    "metadata": "metadata",
    "tags": "tags",
}


def thread_name(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= THREAD_NAME_CHARS else text[: THREAD_NAME_CHARS - 1] + "…"


class ChatDataLayer(BaseDataLayer):
    def __init__(self, engine: AsyncEngine, metrics: ChatMetrics) -> None:
        self.engine = engine
        self.metrics = metrics
        self.sqlite = engine.dialect.name == "sqlite"
        self._insert = sqlite_insert if self.sqlite else pg_insert
        self._writes = WriteQueue(engine, self._write_failed)
        # Built once: making an upsert statement costs more CPU than running it.
        self._thread_upsert = thread_upsert(self._insert)
        self._step_upsert = step_upsert(self._insert)
        # The last failed write of each thread, until the chat has told its user (take_failure).
        self._failures: dict[str, str] = {}

    # --- writes -------------------------------------------------------------------------------------------

    def _queue(self, operation: str, thread_id: str, work: Work | Statements) -> asyncio.Future[bool]:
        """Queue a write (Chainlit's own writes need no more: reads wait for the queue, failures are remembered)."""
        return self._writes.submit(operation, thread_id, work)

    async def _write(self, operation: str, thread_id: str, work: Work | Statements) -> bool:
        """Queue a write and wait: True once it is stored, False when it failed (logged, counted, remembered)."""
        return await self._queue(operation, thread_id, work)

    def _write_failed(self, operation: str, thread_id: str, exc: Exception) -> None:
        reason, advice = explain(exc)
        self.metrics.history_write_failures.labels(operation).inc()
        self._failures[thread_id] = f"{reason}: {advice}"
        log.error("history_write_failed", operation=operation, thread_id=thread_id, reason=reason, error=str(exc))

    async def flush(self) -> None:
        """Wait until every write issued so far is done (stored or failed)."""
        await asyncio.sleep(0)  # writes Chainlit started as tasks just now take their place in the queue first
        await self._writes.flush()

    def take_failure(self, thread_id: str) -> str | None:
        """The last failed write of this thread since the last call, in words; None when all were stored."""
        return self._failures.pop(thread_id, None)

    async def _ensure_thread(self, conn: AsyncConnection, thread_id: str, at: str) -> None:
        """Create the thread if new; move its `updated_at` (the list's order) forward to `at`. One statement."""
        await conn.execute(self._thread_upsert, {"thread_id": thread_id, "at": at, "metadata": {}})

    @queue_until_user_message()
    async def create_step(self, step_dict: dict) -> None:
        await self._upsert_step("create_step", step_dict)

    @queue_until_user_message()
    async def update_step(self, step_dict: dict) -> None:
        await self._upsert_step("update_step", step_dict)

    async def _upsert_step(self, operation: str, step_dict: dict) -> None:
        thread_id = step_dict.get("threadId")
        if not thread_id or not step_dict.get("id"):
            return
        at = step_dict.get("createdAt") or utc_now()
        values = {column: step_dict.get(key) for key, column in STEP_COLUMNS.items() if key in step_dict}
        values["is_error"] = bool(values.get("is_error"))
        values["metadata"] = dict(values.get("metadata") or {})
        for column in ("input", "output"):
            text = values.get(column)
            if isinstance(text, str) and len(text) > STEP_TEXT_CHARS:
                values[column] = text[:STEP_TEXT_CHARS]
                values["metadata"][f"{column}_chars"] = len(text)  # what it was: the rest is not kept
        values["name"] = (values.get("name") or "")[:255]
        row = {column: values.get(column) for column in STEP_COLUMNS.values()}
        row |= {"id": step_dict["id"], "thread_id": thread_id, "created_at": at}
        thread = {"thread_id": thread_id, "at": at, "metadata": {}}
        # Statements, not a function: the writer runs a burst of them as two executemany calls.
        self._queue(operation, thread_id, ((self._thread_upsert, thread), (self._step_upsert, row)))

    @queue_until_user_message()
    async def delete_step(self, step_id: str) -> None:
        thread_id = await self._scalar(sa.select(steps.c.thread_id).where(steps.c.id == step_id))
        if thread_id is None:
            return

        async def work(conn: AsyncConnection) -> None:
            await conn.execute(feedbacks.delete().where(feedbacks.c.step_id == step_id))
            await conn.execute(steps.delete().where(steps.c.id == step_id))

        self._queue("delete_step", thread_id, work)

    async def update_thread(
        self,
        thread_id: str,
        name: str | None = None,
        user_id: str | None = None,
        metadata: dict | None = None,
        tags: list[str] | None = None,
    ) -> None:
        async def work(conn: AsyncConnection) -> None:
            await self._ensure_thread(conn, thread_id, utc_now())
            row = (await conn.execute(sa.select(threads).where(threads.c.id == thread_id))).mappings().one()
            changes: dict[str, Any] = {}
            if name is not None:
                changes["name"] = thread_name(name)
            if user_id is not None and row["user_id"] is None:
                identifier = await conn.scalar(sa.select(users.c.identifier).where(users.c.id == user_id))
                changes |= {"user_id": user_id, "user_identifier": identifier}
            if metadata is not None:
                # Chainlit's convention: a None value removes the key.
                merged = {**(row["metadata"] or {}), **metadata}
                changes["metadata"] = {
                    key: value for key, value in merged.items() if value is not None and key in THREAD_METADATA_KEYS
                }
            if tags is not None:
                changes["tags"] = list(tags)
            if changes:
                await conn.execute(threads.update().where(threads.c.id == thread_id).values(**changes))

        # Not awaited: Chainlit awaits this before telling the page the thread exists; reads wait for the queue.
        self._queue("update_thread", thread_id, work)

    async def delete_thread(self, thread_id: str) -> None:
        async def work(conn: AsyncConnection) -> None:
            await conn.execute(feedbacks.delete().where(feedbacks.c.thread_id == thread_id))
            await conn.execute(steps.delete().where(steps.c.thread_id == thread_id))
            await conn.execute(threads.delete().where(threads.c.id == thread_id))

        if not await self._write("delete_thread", thread_id, work):
            raise unavailable(self.take_failure(thread_id) or "the history database failed")

    async def upsert_feedback(self, feedback: Feedback) -> str:
        feedback.id = feedback.id or str(uuid.uuid4())
        thread_id = await self._scalar(sa.select(steps.c.thread_id).where(steps.c.id == feedback.forId))
        if thread_id is None:
            raise HTTPException(404, detail="That message is not in the history (it may have been deleted).")
        values = {"value": int(feedback.value), "comment": feedback.comment or None}

        async def work(conn: AsyncConnection) -> None:
            insert = self._insert(feedbacks).values(
                id=feedback.id, step_id=feedback.forId, thread_id=thread_id, created_at=utc_now(), **values
            )
            # One rating per answer: rating it again replaces the earlier one.
            await conn.execute(insert.on_conflict_do_update(index_elements=[feedbacks.c.step_id], set_=values))

        if not await self._write("upsert_feedback", thread_id, work):
            raise unavailable(self.take_failure(thread_id) or "the history database failed")
        stored = await self._scalar(sa.select(feedbacks.c.id).where(feedbacks.c.step_id == feedback.forId))
        return str(stored)

    async def delete_feedback(self, feedback_id: str) -> bool:
        thread_id = await self._scalar(sa.select(feedbacks.c.thread_id).where(feedbacks.c.id == feedback_id))
        if thread_id is None:
            return False

        async def work(conn: AsyncConnection) -> None:
            await conn.execute(feedbacks.delete().where(feedbacks.c.id == feedback_id))

        return await self._write("delete_feedback", thread_id, work)

    # --- users --------------------------------------------------------------------------------------------

    async def get_user(self, identifier: str) -> PersistedUser | None:
        row = await self._one(sa.select(users).where(users.c.identifier == identifier))
        if row is None:
            return None
        return PersistedUser(
            id=row["id"], identifier=row["identifier"], createdAt=row["created_at"], metadata=row["metadata"] or {}
        )

    async def create_user(self, user: User) -> PersistedUser | None:
        insert = self._insert(users).values(
            id=str(uuid.uuid4()), identifier=user.identifier, created_at=utc_now(), metadata=user.metadata or {}
        )
        statement = insert.on_conflict_do_update(
            index_elements=[users.c.identifier], set_={"metadata": insert.excluded.metadata}
        )
        if not await self._write("create_user", f"user:{user.identifier}", lambda conn: conn.execute(statement)):
            raise unavailable(self.take_failure(f"user:{user.identifier}") or "the history database failed")
        return await self.get_user(user.identifier)

    # --- reads --------------------------------------------------------------------------------------------

    async def _read(self, statement: sa.Executable) -> list[dict[str, Any]]:
        await self._writes.flush()  # every read sees every write issued before it
        try:
            async with self.engine.connect() as conn:
                return [dict(row) for row in (await conn.execute(statement)).mappings()]
        except Exception as exc:
            reason, advice = explain(exc)
            self.metrics.history_read_failures.inc()
            log.error("history_read_failed", reason=reason, error=str(exc))
            raise unavailable(f"{reason}: {advice}") from exc

    async def _one(self, statement: sa.Executable) -> dict[str, Any] | None:
        rows = await self._read(statement)
        return rows[0] if rows else None

    async def _scalar(self, statement: sa.Executable) -> Any:
        row = await self._one(statement)
        return next(iter(row.values())) if row else None

    async def get_thread_author(self, thread_id: str) -> str:
        # "" makes Chainlit answer 404 for a thread that does not exist (its own layer raises: a 500).
        return await self._scalar(sa.select(threads.c.user_identifier).where(threads.c.id == thread_id)) or ""

    async def owner_of_step(self, step_id: str) -> str | None:
        """The identifier of the user whose thread holds this step (None: no such step)."""
        query = sa.select(threads.c.user_identifier).join(steps, steps.c.thread_id == threads.c.id)
        row = await self._one(query.where(steps.c.id == step_id))
        return None if row is None else row["user_identifier"] or ""

    async def owner_of_feedback(self, feedback_id: str) -> str | None:
        query = sa.select(threads.c.user_identifier).join(feedbacks, feedbacks.c.thread_id == threads.c.id)
        row = await self._one(query.where(feedbacks.c.id == feedback_id))
        return None if row is None else row["user_identifier"] or ""

    async def get_thread(self, thread_id: str) -> ThreadDict | None:
        row = await self._one(sa.select(threads).where(threads.c.id == thread_id))
        if row is None:
            return None
        query = (
            sa.select(steps, feedbacks.c.id.label("feedback_id"), feedbacks.c.value, feedbacks.c.comment)
            .outerjoin(feedbacks, feedbacks.c.step_id == steps.c.id)
            .where(steps.c.thread_id == thread_id)
            .order_by(steps.c.created_at, steps.c.seq)
        )
        return thread_dict(row, [step_dict(step) for step in await self._read(query)])

    async def list_threads(self, pagination: Pagination, filters: ThreadFilter) -> PaginatedResponse[ThreadDict]:
        if not filters.userId:
            raise HTTPException(401, detail="Log in to see your conversations.")
        query = sa.select(threads).where(threads.c.user_id == filters.userId)
        if filters.search:
            pattern = f"%{filters.search.strip()}%"
            matching = sa.select(steps.c.thread_id).where(steps.c.output.ilike(pattern))
            query = query.where(sa.or_(threads.c.name.ilike(pattern), threads.c.id.in_(matching)))
        if filters.feedback is not None:
            rated = sa.select(feedbacks.c.thread_id).where(feedbacks.c.value == int(filters.feedback))
            query = query.where(threads.c.id.in_(rated))
        order = (threads.c.updated_at.desc(), threads.c.id.desc())
        if pagination.cursor:
            after = await self._one(sa.select(threads.c.updated_at).where(threads.c.id == pagination.cursor))
            if after is not None:
                at = after["updated_at"]
                query = query.where(
                    sa.or_(
                        threads.c.updated_at < at, sa.and_(threads.c.updated_at == at, threads.c.id < pagination.cursor)
                    )
                )
        rows = await self._read(query.order_by(*order).limit(pagination.first + 1))
        page = [thread_dict(row, []) for row in rows[: pagination.first]]
        return PaginatedResponse(
            pageInfo=PageInfo(
                hasNextPage=len(rows) > pagination.first,
                startCursor=page[0]["id"] if page else None,
                endCursor=page[-1]["id"] if page else None,
            ),
            data=page,
        )

    # --- not used by this chat (no uploads, no favourites, no debug UI) -------------------------------------

    @queue_until_user_message()
    async def create_element(self, element: Any) -> None:
        return None

    async def get_element(self, thread_id: str, element_id: str) -> None:
        return None

    @queue_until_user_message()
    async def delete_element(self, element_id: str, thread_id: str | None = None) -> None:
        return None

    async def get_favorite_steps(self, user_id: str) -> list:
        return []

    async def build_debug_url(self) -> str:
        return ""

    async def close(self) -> None:
        await self._writes.close()
        await self.engine.dispose()


def thread_upsert(insert_into: Callable) -> sa.Executable:
    """A new thread, or its `updated_at` moved forward (parameters: thread_id, at, metadata)."""
    insert = insert_into(threads).values(
        id=sa.bindparam("thread_id"),
        created_at=sa.bindparam("at"),
        updated_at=sa.bindparam("at"),
        metadata=sa.bindparam("metadata", type_=sa.JSON),
    )
    later = sa.case(
        (threads.c.updated_at < insert.excluded.updated_at, insert.excluded.updated_at), else_=threads.c.updated_at
    )
    return insert.on_conflict_do_update(index_elements=[threads.c.id], set_={"updated_at": later})


def step_upsert(insert_into: Callable) -> sa.Executable:
    """A step as Chainlit sends it (parameters: its columns); an update keeps its first time and thread."""
    columns = ["id", "thread_id", "created_at", *STEP_COLUMNS.values()]
    insert = insert_into(steps).values({name: sa.bindparam(name, type_=steps.c[name].type) for name in columns})
    return insert.on_conflict_do_update(
        index_elements=[steps.c.id], set_={name: insert.excluded[name] for name in STEP_COLUMNS.values()}
    )


def unavailable(reason: str) -> HTTPException:
    return HTTPException(503, detail=f"The chat history is unavailable: {reason}.")


def thread_dict(row: dict[str, Any], step_dicts: list[dict]) -> ThreadDict:
    return ThreadDict(
        id=row["id"],
        createdAt=row["created_at"],
        name=row["name"],
        userId=row["user_id"],
        userIdentifier=row["user_identifier"],
        tags=row["tags"],
        metadata=row["metadata"] or {},
        steps=step_dicts,  # type: ignore[typeddict-item]
        elements=[],
    )


def step_dict(row: dict[str, Any]) -> dict[str, Any]:
    feedback = None
    if row.get("feedback_id") is not None:
        feedback = {"id": row["feedback_id"], "forId": row["id"], "value": row["value"], "comment": row["comment"]}
    return {
        "id": row["id"],
        "threadId": row["thread_id"],
        "parentId": row["parent_id"],
        "name": row["name"],
        "type": row["type"],
        "input": row["input"] or "",
        "output": row["output"] or "",
        "createdAt": row["created_at"],
        "start": row["start"],
        "end": row["end"],
        "isError": row["is_error"],
        "language": row["language"],
        "metadata": row["metadata"] or {},
        "tags": row["tags"],
        "streaming": False,
        "feedback": feedback,
    }
