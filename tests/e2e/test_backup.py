"""scripts/backup and scripts/restore end to end: a conversation in the chat and an account and chat in Open WebUI,
copied out of the running stack, the stack and its volumes deleted, and everything found again in a new stack (a
new project) after the restore, with the old logins still valid; then the same with the history in PostgreSQL.

Stacks of their own, one after the other (not the package's shared `stack`): the restore must go into volumes
that never held the data. Open WebUI's start makes this module take a few minutes.

The PostgreSQL server is the session's throwaway one (Debian's binaries, on 127.0.0.1); the chat's container
reaches it through a TCP relay on this machine's address on Docker's default bridge, which is also an address of
this machine: pg_dump reaches the same URL from here, as for a database server on the host.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import tarfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from chat_support import connected

from tests.e2e.stack import ADMIN, EMBEDDED_MODEL, ONE_SHOT_SERVICES, Stack, webui
from tests.support.docker import bridge_gateway
from tests.support.postgres import PostgresServer
from tests.support.process import REPO, wait_until
from tests.support.relay import tcp_relay

pytestmark = pytest.mark.e2e

THREADS_QUERY = {"pagination": {"first": 20}, "filter": {}}


def run_script(stack: Stack, *args: str, timeout: float = 600, **env: str) -> subprocess.CompletedProcess[str]:
    """scripts/backup or scripts/restore on `stack`, as a user runs them: from the repository, the project named
    by COMPOSE_PROJECT_NAME, the stack's settings in the environment."""
    full_env = {name: value for name, value in os.environ.items() if name != "COMPOSE_FILE"}
    full_env.update(stack.env, COMPOSE_PROJECT_NAME=stack.project, **env)
    return subprocess.run(
        [str(REPO / "scripts" / args[0]), *args[1:]],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env=full_env,
        stdin=subprocess.DEVNULL,
    )


def threads(stack: Stack, cookies: dict[str, str]) -> httpx.Response:
    return httpx.post(f"{stack.url('chat-app')}/project/threads", json=THREADS_QUERY, cookies=cookies, timeout=10)


def thread_ids(stack: Stack, cookies: dict[str, str]) -> list[str]:
    response = threads(stack, cookies)
    assert response.status_code == 200, response.text
    return [thread["id"] for thread in response.json()["data"]]


def user_messages(stack: Stack, cookies: dict[str, str], thread_id: str) -> list[str]:
    response = httpx.get(f"{stack.url('chat-app')}/project/thread/{thread_id}", cookies=cookies, timeout=10)
    assert response.status_code == 200, response.text
    return [step["output"] for step in response.json()["steps"] if step["type"] == "user_message"]


async def conversation(url: str, question: str, cookies: dict[str, str] | None = None) -> tuple[str, dict[str, str]]:
    """One question in a new chat, logged in as the page does; returns the thread and the login cookie."""
    async with connected(url, cookies=cookies) as client:
        reply = await client.ask(question)
    assert EMBEDDED_MODEL in reply.final_text(), reply.events
    assert client.thread_id and client.cookies
    return client.thread_id, client.cookies


def started_at(stack: Stack, service: str) -> str:
    return subprocess.run(
        ["docker", "inspect", "--format", "{{.State.StartedAt}}", stack.container(service)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def manifest_of(backup: Path) -> dict[str, str]:
    lines = (backup / "MANIFEST").read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines if not line.startswith("#"))


def files_in(backup: Path) -> list[str]:
    return sorted(p.relative_to(backup).as_posix() for p in backup.rglob("*") if p.is_file())


@pytest.fixture
def new_stack(offline_images: float, chat_model: Path, artifacts: Path) -> Iterator[Callable[..., Stack]]:
    """Makes stacks of the offline images, each its own project; every one is removed with its volumes at the end."""
    made: list[Stack] = []

    def make(**env: str) -> Stack:
        stack = Stack.create(
            f"fs-backup-{uuid.uuid4().hex[:8]}",
            OFFLINE_MODEL_DIR=str(chat_model),
            MODEL=EMBEDDED_MODEL,
            MAX_TOKENS="24",
            WEBUI_SECRET_KEY="",
            **env,
        )
        made.append(stack)
        stack.down(volumes=True)
        stack.up()
        return stack

    try:
        yield make
    finally:
        for stack in made:
            (artifacts / f"e2e-{stack.project}.log").write_text(stack.logs(tail=200))
            stack.down(volumes=True)


def test_backup_of_a_running_stack_restores_into_a_new_one(new_stack: Callable[..., Stack], tmp_path: Path) -> None:
    old = new_stack()
    question = f"remember this {uuid.uuid4().hex[:6]}"
    old.wait_chat_ready(EMBEDDED_MODEL)
    thread_id, cookies = asyncio.run(conversation(old.url("chat-app"), question))
    wait_until(lambda: thread_id in thread_ids(old, cookies), 15, "the thread in the chat's history")

    with old.http("open-webui") as http:
        signup = http.post("/api/v1/auths/signup", json=ADMIN)
        assert signup.status_code == 200, signup.text
        webui_token = signup.json()["token"]
    title = f"kept by the backup {uuid.uuid4().hex[:6]}"
    chat = {"title": title, "models": [EMBEDDED_MODEL], "messages": [], "history": {"messages": {}, "currentId": None}}
    with webui(old, webui_token) as http:
        created = http.post("/api/v1/chats/new", json={"chat": chat})
        assert created.status_code == 200, created.text
        chat_id = created.json()["id"]

    # --- the backup, while everything runs (no COMPOSE_FILE: the script reads the files the stack started with) --
    backup = tmp_path / "backup"
    before = {service: started_at(old, service) for service in ("chat-app", "open-webui")}
    result = run_script(old, "backup", str(backup))
    assert result.returncode == 0, result.stdout + result.stderr
    assert str(backup) in result.stdout
    assert {service: started_at(old, service) for service in before} == before, "nothing was restarted"
    assert old.chat_metric("chat_history_up") == 1

    manifest = manifest_of(backup)
    assert manifest["project"] == old.project
    assert manifest["chat_history"] == "sqlite"
    assert manifest["chat_schema_version"] == "1"
    assert manifest["compose_files"] == f"{REPO / 'compose.yaml'}:{REPO / 'compose.offline.yaml'}"
    assert files_in(backup) == [
        "MANIFEST",
        "chat-app/chat.db",
        "chat-app/volume.tar",
        "open-webui/volume.tar",
        "open-webui/webui.db",
    ]
    assert (backup.stat().st_mode & 0o077) == 0, "the copy holds secrets: its owner's only"
    with sqlite3.connect(f"file:{backup / 'chat-app' / 'chat.db'}?immutable=1", uri=True) as db:
        assert db.execute("SELECT count(*) FROM threads WHERE id = ?", (thread_id,)).fetchone() == (1,)
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    with sqlite3.connect(f"file:{backup / 'open-webui' / 'webui.db'}?immutable=1", uri=True) as db:
        assert db.execute("SELECT title FROM chat WHERE id = ?", (chat_id,)).fetchone() == (title,)
    with tarfile.open(backup / "chat-app" / "volume.tar") as tar:
        assert [m.name for m in tar.getmembers() if m.isfile()] == ["./auth-secret"]
        secret = tar.extractfile("./auth-secret").read().decode().strip()  # type: ignore[union-attr]
    with tarfile.open(backup / "open-webui" / "volume.tar") as tar:
        assert "./.webui_secret_key" in tar.getnames()
        assert not [name for name in tar.getnames() if "webui.db" in name]
    assert secret not in result.stdout + result.stderr, "the login key is never printed"
    # The temporary copies made in the volumes are gone.
    for service, path in (("chat-app", "/app/data"), ("open-webui", "/app/backend/data")):
        listing = old.compose("exec", "-T", service, "ls", "-A", path).stdout
        assert ".backup-" not in listing, listing

    refused = run_script(old, "backup", str(backup))
    assert refused.returncode == 1
    assert "is not empty" in refused.stderr

    # --- gone: the stack and its volumes ------------------------------------------------------------------------
    old.down(volumes=True)
    stopped = run_script(old, "backup", str(tmp_path / "never"))
    assert stopped.returncode == 1
    assert "the stack is not running" in stopped.stderr
    assert not (tmp_path / "never").exists()

    # --- a new stack: nothing of the old one until the restore ------------------------------------------------------
    new = new_stack()
    assert threads(new, cookies).status_code == 401, "a new stack has its own login key"
    with new.http("open-webui") as http:
        signin = http.post("/api/v1/auths/signin", json={"email": ADMIN["email"], "password": ADMIN["password"]})
        assert signin.status_code != 200, "a new stack has no accounts"

    unconfirmed = run_script(new, "restore", str(backup))
    assert unconfirmed.returncode == 1
    assert "--yes" in unconfirmed.stderr
    assert {c["Service"]: c["State"] for c in new.ps()}["chat-app"] == "running", "nothing was stopped"

    compose_files = "compose.yaml:compose.offline.yaml"
    result = run_script(new, "restore", "--yes", str(backup), COMPOSE_FILE=compose_files)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "healthy" in result.stdout
    assert secret not in result.stdout + result.stderr
    for container in new.ps():
        if container["Service"] in ONE_SHOT_SERVICES:
            assert (container["State"], container["ExitCode"]) == ("exited", 0), container
        else:
            assert (container["State"], container["Health"]) == ("running", "healthy"), container

    # The restored files belong to the services' users (uid 10001 in this stack).
    owners = new.compose("exec", "-T", "chat-app", "stat", "-c", "%n %u", "/app/data/chat.db", "/app/data/auth-secret")
    assert owners.stdout.split() == ["/app/data/chat.db", "10001", "/app/data/auth-secret", "10001"]
    owners = new.compose("exec", "-T", "open-webui", "stat", "-c", "%u", "/app/backend/data/webui.db")
    assert owners.stdout.split() == ["10001"]

    # The chat: the old login cookie works (the login key came back), the thread and its question are there, and
    # the restored database takes new conversations.
    assert thread_id in thread_ids(new, cookies)
    assert user_messages(new, cookies, thread_id) == [question]
    new.wait_chat_ready(EMBEDDED_MODEL)
    later, _ = asyncio.run(conversation(new.url("chat-app"), "and after the restore", cookies=cookies))
    wait_until(lambda: {thread_id, later} <= set(thread_ids(new, cookies)), 15, "both threads in the history")

    # Open WebUI: the account signs in, its token from before still works, the chat is there, and new ones can be
    # written.
    with new.http("open-webui") as http:
        signin = http.post("/api/v1/auths/signin", json={"email": ADMIN["email"], "password": ADMIN["password"]})
        assert signin.status_code == 200, signin.text
        assert signin.json()["role"] == "admin"
    with webui(new, webui_token) as http:
        assert http.get("/api/v1/auths/").status_code == 200
        kept = http.get(f"/api/v1/chats/{chat_id}")
        assert kept.status_code == 200, kept.text
        assert kept.json()["chat"]["title"] == title
        another = http.post("/api/v1/chats/new", json={"chat": {**chat, "title": "after the restore"}})
        assert another.status_code == 200, another.text


def test_a_postgresql_history_is_dumped_and_restored(
    new_stack: Callable[..., Stack], postgres: PostgresServer, tmp_path: Path
) -> None:
    database = f"chat_{uuid.uuid4().hex[:8]}"
    postgres.create_database(database)
    gateway = bridge_gateway()
    password = f"never-printed-{uuid.uuid4().hex[:8]}"  # the server trusts 127.0.0.1: any password will do

    def psql(sql: str) -> str:
        command = ["psql", "-XAtq", postgres.database_url(database), "-c", sql]
        return subprocess.run(command, capture_output=True, text=True, check=True, timeout=30).stdout

    with tcp_relay(("127.0.0.1", postgres.port), listen=(gateway, 0)) as port:
        stack = new_stack(DATABASE_URL=f"postgresql://postgres:{password}@{gateway}:{port}/{database}")
        stack.wait_chat_ready(EMBEDDED_MODEL)
        assert stack.chat_metric("chat_history_up") == 1
        kept, cookies = asyncio.run(conversation(stack.url("chat-app"), "kept in PostgreSQL"))
        wait_until(lambda: kept in thread_ids(stack, cookies), 15, "the thread in the chat's history")

        # A URL the containers know but this machine does not: refused before anything is written, and said so.
        unreachable = run_script(
            stack,
            "backup",
            str(tmp_path / "never"),
            BACKUP_DATABASE_URL=f"postgresql://postgres:{password}@postgres:5432/{database}",
        )
        assert unreachable.returncode == 1
        assert "cannot reach" in unreachable.stderr and "BACKUP_DATABASE_URL" in unreachable.stderr
        assert password not in unreachable.stdout + unreachable.stderr
        assert not (tmp_path / "never").exists()

        backup = tmp_path / "backup"
        result = run_script(stack, "backup", str(backup))
        assert result.returncode == 0, result.stdout + result.stderr
        assert password not in result.stdout + result.stderr
        manifest = manifest_of(backup)
        assert (manifest["chat_history"], manifest["chat_schema_version"]) == ("postgresql", "1")
        assert files_in(backup) == [
            "MANIFEST",
            "chat-app/chat.pgdump",
            "chat-app/volume.tar",
            "open-webui/volume.tar",
            "open-webui/webui.db",
        ]

        # After the backup: the kept thread deleted (the only one so far), another one written. The restore undoes both.
        psql("DELETE FROM threads")
        later, _ = asyncio.run(conversation(stack.url("chat-app"), "after the backup", cookies=cookies))
        wait_until(lambda: later in thread_ids(stack, cookies), 15, "the later thread in the chat's history")
        assert kept not in thread_ids(stack, cookies)

        result = run_script(stack, "restore", "--yes", str(backup))
        assert result.returncode == 0, result.stdout + result.stderr
        assert "pg_restore" in result.stdout
        assert password not in result.stdout + result.stderr
        assert thread_ids(stack, cookies) == [kept]
        assert user_messages(stack, cookies, kept) == ["kept in PostgreSQL"]
        assert psql("SELECT max(version) FROM schema_version").strip() == "1"
        stack.wait_chat_ready(EMBEDDED_MODEL)
        assert stack.chat_metric("chat_history_up") == 1
