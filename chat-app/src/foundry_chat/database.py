"""The history's database: which one, its tables, and its schema kept current at start.

SQLite in CHAT_DATA_DIR by default (nothing else to run), PostgreSQL when DATABASE_URL names one (several chat
replicas share it). The tables are SQLAlchemy Core, so one definition serves both.

Migrations are numbered functions, run in order at start inside one transaction, and recorded in
`schema_version`. A database written by a newer release (a higher version than MIGRATIONS knows) is refused
with SchemaTooNew: the chat then runs without history and says why, rather than crash-looping or writing rows
that a newer schema does not expect. With one migration so far this is simpler than Alembic; switch when
migrations need its autogenerate or branching.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

SQLITE_FILE = "chat.db"
# Lock id for PostgreSQL's advisory lock: replicas starting together migrate one at a time.
MIGRATION_LOCK_ID = 4_000_401
# How long a SQLite writer waits for another (the backup's reader, another process) before failing.
SQLITE_BUSY_MS = 10_000

metadata = sa.MetaData()

schema_version = sa.Table("schema_version", metadata, sa.Column("version", sa.Integer, nullable=False))

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("identifier", sa.String(255), nullable=False, unique=True),
    sa.Column("created_at", sa.String(40), nullable=False),
    sa.Column("metadata", sa.JSON, nullable=False),
)

threads = sa.Table(
    "threads",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    # Set once, by the first write that knows the user; never changed after (a thread cannot change hands).
    sa.Column("user_id", sa.String(36), sa.ForeignKey("users.id", ondelete="CASCADE"), index=True),
    sa.Column("user_identifier", sa.String(255)),
    sa.Column("name", sa.String(255)),
    sa.Column("created_at", sa.String(40), nullable=False),
    # The latest step's time: the thread list's order.
    sa.Column("updated_at", sa.String(40), nullable=False),
    sa.Column("metadata", sa.JSON, nullable=False),
    sa.Column("tags", sa.JSON),
)

steps = sa.Table(
    "steps",
    metadata,
    # Insertion order: breaks ties between steps created in the same microsecond.
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("id", sa.String(36), nullable=False, unique=True),
    sa.Column("thread_id", sa.String(36), sa.ForeignKey("threads.id", ondelete="CASCADE"), nullable=False),
    sa.Column("parent_id", sa.String(36)),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("type", sa.String(40), nullable=False),
    sa.Column("input", sa.Text),
    sa.Column("output", sa.Text),
    sa.Column("created_at", sa.String(40), nullable=False),
    sa.Column("start", sa.String(40)),
    sa.Column("end", sa.String(40)),
    sa.Column("is_error", sa.Boolean, nullable=False, default=False),
    sa.Column("language", sa.String(40)),
    sa.Column("metadata", sa.JSON, nullable=False),
    sa.Column("tags", sa.JSON),
    sa.Index("steps_thread_order", "thread_id", "created_at", "seq"),
)

feedbacks = sa.Table(
    "feedbacks",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("step_id", sa.String(36), sa.ForeignKey("steps.id", ondelete="CASCADE"), nullable=False, unique=True),
    sa.Column("thread_id", sa.String(36), sa.ForeignKey("threads.id", ondelete="CASCADE"), nullable=False),
    sa.Column("value", sa.Integer, nullable=False),
    sa.Column("comment", sa.Text),
    sa.Column("created_at", sa.String(40), nullable=False),
)


UNREACHABLE = "the history database cannot be reached"


def explain(exc: BaseException) -> tuple[str, str]:
    """What went wrong with the database, and what to do, in words (from the driver's message)."""
    text = str(getattr(exc, "orig", None) or exc).lower()
    if "readonly" in text or "read-only" in text or "read only" in text:
        return "the history database is read-only", "make it writable (CHAT_DATA_DIR or DATABASE_URL)"
    if "full" in text or "no space" in text or ("disk" in text and "quota" in text):
        return "the history database's disk is full", "free some space"
    if isinstance(exc, OSError | ConnectionError) or "connect" in text or "closed" in text:
        return UNREACHABLE, "check that it is running (DATABASE_URL)"
    return f"the history database refused a write ({type(exc).__name__})", "check the chat service's log"


class SchemaTooNew(RuntimeError):
    """The database was written by a newer release of the chat."""


def create_v1(conn: Connection) -> None:
    metadata.create_all(conn, tables=[users, threads, steps, feedbacks])


# (version, what it does, the function): append, never edit a released one.
MIGRATIONS: list[tuple[int, str, Callable[[Connection], None]]] = [
    (1, "users, threads, steps and feedbacks", create_v1),
]
CURRENT_VERSION = MIGRATIONS[-1][0]


def database_url(url: str | None, data_dir: str) -> str:
    """The SQLAlchemy async URL: PostgreSQL through asyncpg, SQLite through aiosqlite."""
    if not url:
        path = Path(data_dir).resolve() / SQLITE_FILE
        return f"sqlite+aiosqlite:///{path}"
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend in {"postgres", "postgresql"}:
        return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)
    if backend == "sqlite":
        return parsed.set(drivername="sqlite+aiosqlite").render_as_string(hide_password=False)
    raise ValueError(f"DATABASE_URL names {backend!r}: use postgresql://… or leave it unset for SQLite")


def describe(url: str) -> str:
    """Where the history is, for logs and messages: never the password."""
    return make_url(url).render_as_string(hide_password=True)


def create_engine(url: str) -> AsyncEngine:
    if make_url(url).get_backend_name() != "sqlite":
        return create_async_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)
    path = make_url(url).database
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url, connect_args={"timeout": SQLITE_BUSY_MS / 1000})

    @event.listens_for(engine.sync_engine, "connect")
    def _sqlite_pragmas(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        # WAL: readers never wait for the writer, and a crash leaves a database that opens cleanly.
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")
        cursor.close()

    return engine


def installed_version(conn: Connection) -> int:
    if not sa.inspect(conn).has_table("schema_version"):
        return 0
    return int(conn.execute(sa.select(sa.func.max(schema_version.c.version))).scalar() or 0)


def migrate_sync(conn: Connection) -> list[str]:
    """Bring the schema to CURRENT_VERSION; returns what was done (empty when it was current)."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID})
    version = installed_version(conn)
    if version > CURRENT_VERSION:
        raise SchemaTooNew(
            f"the history database has schema version {version}, newer than this release knows "
            f"({CURRENT_VERSION}): run the newer chat image, or restore a backup made by this one"
        )
    done = []
    if version == 0:
        metadata.create_all(conn, tables=[schema_version])
    for number, what, apply in MIGRATIONS:
        if number > version:
            apply(conn)
            conn.execute(schema_version.delete())
            conn.execute(schema_version.insert().values(version=number))
            done.append(f"{number}: {what}")
    # A write that changes nothing: a read-only database is found now, at start, not at the first message.
    conn.execute(schema_version.update().values(version=schema_version.c.version))
    return done


async def migrate(engine: AsyncEngine) -> list[str]:
    async with engine.begin() as conn:
        return await conn.run_sync(migrate_sync)
