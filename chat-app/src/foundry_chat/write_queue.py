"""One writer for the history: writes run in the order they were issued, a burst of them in one transaction.

Chainlit starts every write as a task of its own; run as they come, they race each other (a step's update before
its creation), each takes a connection and a transaction, and their database work runs on the event loop right
when an answer starts. Here they queue instead, and one task writes them in order.

Trade-off: a write waits up to `linger` seconds for others to join it. That is what a crash can lose beyond
the last checkpoint, in exchange for one transaction per burst instead of one per write, and no database work in
the first milliseconds of an answer. When a batch fails, each of its writes is tried alone, so one bad write
(a read-only table, a full disk) never takes the others with it.

A write is either a function of the connection, run in its place, or plain statements with their parameters.
Between two functions, the statements of consecutive writes are run grouped by statement, each group as one
executemany, in the order each statement first appears (rows of one statement keep their order): fit for
statements whose groups commute, as "create the thread if new" before "upsert the step" does.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from sqlalchemy import Executable
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

Work = Callable[[AsyncConnection], Awaitable[object]]
Statements = tuple[tuple[Executable, dict], ...]
OnFailure = Callable[[str, str, Exception], None]


@dataclass
class Write:
    operation: str  # for the failure's log line and metric
    key: str  # whose failure it is (a thread id)
    work: Work | Statements | None  # None: a barrier (flush)
    done: asyncio.Future[bool] = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    async def run(self, conn: AsyncConnection) -> None:
        if callable(self.work):
            await self.work(conn)
        elif self.work:
            await execute_grouped(conn, list(self.work))


class WriteQueue:
    def __init__(self, engine: AsyncEngine, on_failure: OnFailure, linger: float = 0.02, max_batch: int = 256) -> None:
        self.engine = engine
        self.on_failure = on_failure
        self.linger = linger
        self.max_batch = max_batch
        self._queue: asyncio.Queue[Write] = asyncio.Queue()
        self._writer: asyncio.Task | None = None

    def submit(self, operation: str, key: str, work: Work | Statements | None) -> asyncio.Future[bool]:
        """Queue a write; the future says whether it was stored (never raises)."""
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._run(), name="history-writer")
        write = Write(operation, key, work)
        self._queue.put_nowait(write)
        return write.done

    async def flush(self) -> None:
        """Wait until every write queued so far is done (stored or failed)."""
        await self.submit("flush", "", None)

    async def close(self) -> None:
        if self._writer is not None and not self._writer.done():
            await self.flush()
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            await asyncio.sleep(self.linger)
            while len(batch) < self.max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            await self._write(batch)

    async def _write(self, batch: list[Write]) -> None:
        writes = [write for write in batch if write.work is not None]
        try:
            if writes:
                async with self.engine.begin() as conn:
                    await run_batch(conn, writes)
        except Exception:  # one of them failed: alone, each of the others may still be stored
            for write in writes:
                await self._write_alone(write)
        else:
            for write in writes:
                settle(write, True)
        for write in batch:
            settle(write, True)  # the barriers: everything before them is done

    async def _write_alone(self, write: Write) -> None:
        try:
            async with self.engine.begin() as conn:
                await write.run(conn)
        except Exception as exc:  # the database's trouble is told to the user by the layer, not raised here
            self.on_failure(write.operation, write.key, exc)
            settle(write, False)
        else:
            settle(write, True)


def settle(write: Write, stored: bool) -> None:
    # Its waiter may be gone (a cancelled task cancels the future it awaited): the write happened all the same.
    if not write.done.done():
        write.done.set_result(stored)


async def run_batch(conn: AsyncConnection, writes: list[Write]) -> None:
    """The writes in order; the statements of consecutive statement-writes grouped (the module's docstring)."""
    pending: list[tuple[Executable, dict]] = []
    for write in writes:
        if callable(write.work):
            await execute_grouped(conn, pending)
            pending = []
            await write.work(conn)
        else:
            pending += write.work or ()
    await execute_grouped(conn, pending)


async def execute_grouped(conn: AsyncConnection, rows: list[tuple[Executable, dict]]) -> None:
    groups: dict[int, tuple[Executable, list[dict]]] = {}
    for statement, parameters in rows:
        groups.setdefault(id(statement), (statement, []))[1].append(parameters)
    for statement, parameters in groups.values():
        await conn.execute(statement, parameters if len(parameters) > 1 else parameters[0])
