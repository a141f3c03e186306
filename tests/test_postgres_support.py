"""The throwaway PostgreSQL server the tests use (tests/support/postgres.py): Debian's binaries, a local process."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

import asyncpg
import pytest

from tests.support.postgres import (
    NOT_INSTALLED,
    PostgresNotInstalled,
    PostgresServer,
    find_bin_dir,
    running_postgres,
)

pytestmark = pytest.mark.integration


async def _fetch(url: str, query: str) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(url, timeout=10)
    try:
        return await connection.fetch(query)
    finally:
        await connection.close()


async def _execute(url: str, *statements: str) -> None:
    connection = await asyncpg.connect(url, timeout=10)
    try:
        for statement in statements:
            await connection.execute(statement)
    finally:
        await connection.close()


def test_server_answers_as_superuser(postgres: PostgresServer) -> None:
    assert postgres.url == f"postgresql://postgres@127.0.0.1:{postgres.port}/postgres"
    [row] = asyncio.run(
        _fetch(
            postgres.url,
            "SELECT current_user, current_database(), current_setting('server_encoding') AS encoding,"
            " current_setting('fsync') AS fsync, inet_server_addr()::text AS address",
        )
    )
    assert dict(row) == {
        "current_user": "postgres",
        "current_database": "postgres",
        "encoding": "UTF8",
        "fsync": "off",
        "address": "127.0.0.1/32",
    }


def test_databases_are_separate(postgres: PostgresServer) -> None:
    first = postgres.create_database("support_first")
    second = postgres.create_database("support second")  # a name that needs quoting, in SQL and in the URL
    assert first.endswith("/support_first")
    assert second.endswith("/support%20second")

    asyncio.run(_execute(first, "CREATE TABLE messages (id serial PRIMARY KEY, body text)"))
    asyncio.run(_execute(first, "INSERT INTO messages (body) VALUES ('héllo'), ('wörld')"))
    asyncio.run(_execute(second, "CREATE TABLE messages (id serial PRIMARY KEY, body text)"))

    rows = asyncio.run(_fetch(first, "SELECT current_database() AS db, body FROM messages ORDER BY id"))
    assert [(r["db"], r["body"]) for r in rows] == [("support_first", "héllo"), ("support_first", "wörld")]
    [row] = asyncio.run(_fetch(second, "SELECT current_database() AS db, count(*) AS n FROM messages"))
    assert (row["db"], row["n"]) == ("support second", 0)


def test_dump_is_a_custom_format_archive(postgres: PostgresServer, tmp_path: Path) -> None:
    url = postgres.create_database("support_dump")
    asyncio.run(_execute(url, "CREATE TABLE dumped_table (x int)", "INSERT INTO dumped_table VALUES (42)"))
    path = postgres.dump("support_dump", tmp_path / "support_dump.pgdump")
    data = path.read_bytes()
    assert data.startswith(b"PGDMP")  # pg_dump -Fc's magic
    assert b"dumped_table" in data


def test_a_server_starts_and_stops_cleanly(tmp_path: Path) -> None:
    with running_postgres(tmp_path / "own") as server:
        private_dir = server.private_dir
        [row] = asyncio.run(_fetch(server.url, "SELECT 1 AS one"))
        assert row["one"] == 1
        if os.geteuid() == 0:
            # PostgreSQL refuses root: the server runs as Debian's `postgres` user, which owns the cluster.
            assert server.data_dir.owner() == "postgres"
    assert server.proc.returncode == 0, server.log()
    assert "database system is shut down" in server.log()
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", server.port)) != 0
    if private_dir is not None:
        assert not private_dir.exists()


def test_missing_binaries_say_what_to_install(tmp_path: Path) -> None:
    with pytest.raises(PostgresNotInstalled, match="run scripts/install-prerequisites") as info:
        find_bin_dir(tmp_path)
    assert str(info.value).startswith(NOT_INSTALLED)


def test_newest_version_is_chosen(tmp_path: Path) -> None:
    for version in ("9.6", "15", "16", "100"):
        bin_dir = tmp_path / version / "bin"
        bin_dir.mkdir(parents=True)
        for name in ("initdb", "postgres", "pg_isready", "createdb", "pg_dump"):
            (bin_dir / name).touch(mode=0o755)
    (tmp_path / "100" / "bin" / "pg_dump").unlink()  # incomplete: not a candidate
    assert find_bin_dir(tmp_path) == tmp_path / "16" / "bin"
