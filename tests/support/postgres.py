"""A throwaway PostgreSQL server for tests: Debian's own binaries (package postgresql) run as a local process.

No container image is needed: `initdb` makes a fresh cluster under the test's directory, `postgres` serves it on
127.0.0.1 on a free port (trust authentication, fsync off), and `stop()` shuts it down. PostgreSQL refuses to run as
root, so as root (CI) the cluster belongs to the `postgres` system user the Debian package creates and the server
runs as that user.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from tests.support.logs import register
from tests.support.process import free_port, wait_until

PG_ROOT = Path("/usr/lib/postgresql")
NOT_INSTALLED = "PostgreSQL is not installed: run scripts/install-prerequisites (Debian package postgresql)"
SUPERUSER = "postgres"
# The system user that owns the cluster and runs the server when the tests run as root.
SYSTEM_USER = "postgres"
# A unix socket path longer than this (sun_path is 108 bytes with its NUL) cannot be bound.
MAX_SOCKET_PATH = 107
BIND_FAILED = re.compile(r"could not bind|could not create any TCP/IP sockets|Address already in use")


class PostgresNotInstalled(RuntimeError):
    """Debian's PostgreSQL binaries are missing."""


class PostgresError(RuntimeError):
    """initdb, the server or a client command failed."""


def find_bin_dir(root: Path = PG_ROOT) -> Path:
    """The newest `ROOT/VERSION/bin` that has every program we run."""
    needed = ("initdb", "postgres", "pg_isready", "createdb", "pg_dump")
    candidates = [
        path.parent
        for path in root.glob("*/bin/initdb")
        if all(os.access(path.parent / name, os.X_OK) for name in needed)
    ]
    if not candidates:
        raise PostgresNotInstalled(f"{NOT_INSTALLED}; no {root}/VERSION/bin with {', '.join(needed)}")
    return max(candidates, key=lambda bin_dir: _version_key(bin_dir.parent.name))


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", name)) or (-1,)


@dataclass(frozen=True)
class _RunAs:
    """Who runs initdb and the server: this process's user, or `postgres` when this process is root."""

    uid: int
    gid: int
    groups: tuple[int, ...]
    name: str | None  # None: this process's own user

    @classmethod
    def current(cls) -> _RunAs:
        if os.geteuid() != 0:
            return cls(os.geteuid(), os.getegid(), tuple(os.getgroups()), None)
        try:
            entry = pwd.getpwnam(SYSTEM_USER)
        except KeyError:
            raise PostgresNotInstalled(
                f"{NOT_INSTALLED}; PostgreSQL refuses to run as root and there is no '{SYSTEM_USER}' system user"
            ) from None
        return cls(entry.pw_uid, entry.pw_gid, tuple(os.getgrouplist(SYSTEM_USER, entry.pw_gid)), SYSTEM_USER)

    def popen_kwargs(self) -> dict:
        if self.name is None:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": list(self.groups)}

    def can_enter(self, path: Path) -> bool:
        """Whether this user may traverse every directory from / down to `path` (mode bits, as the kernel checks)."""
        if self.uid == 0:
            return True
        for directory in [path, *path.parents]:
            st = directory.stat()
            if st.st_uid == self.uid:
                bit = stat.S_IXUSR
            elif st.st_gid in self.groups or st.st_gid == self.gid:
                bit = stat.S_IXGRP
            else:
                bit = stat.S_IXOTH
            if not st.st_mode & bit:
                return False
        return True

    def own(self, path: Path) -> None:
        if self.name is not None:
            os.chown(path, self.uid, self.gid)


def _client_env() -> dict[str, str]:
    """This process's environment without libpq's PG* variables (they would redirect initdb, psql, pg_dump)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    env.update(LC_ALL="C", LANG="C")
    return env


@dataclass
class PostgresServer:
    """A running throwaway server; `url` is its `postgres` database as the superuser `postgres`."""

    bin_dir: Path
    data_dir: Path
    socket_dir: Path
    log_path: Path
    port: int
    proc: subprocess.Popen
    start_seconds: float = 0.0
    # A private directory outside the test's own (when the `postgres` user could not reach that): removed by stop().
    private_dir: Path | None = field(default=None, repr=False)

    host = "127.0.0.1"

    def __post_init__(self) -> None:
        register(self)

    @property
    def url(self) -> str:
        return self.database_url(SUPERUSER)

    def database_url(self, database: str) -> str:
        return f"postgresql://{SUPERUSER}@{self.host}:{self.port}/{quote(database, safe='')}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _client(self, program: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin_dir / program), "-h", self.host, "-p", str(self.port), "-U", SUPERUSER, *args]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=_client_env())
        if result.returncode != 0:
            raise PostgresError(
                f"{' '.join(command)} exited with {result.returncode}:\n{result.stdout}{result.stderr}"
                f"\nserver log: {self.log_path}"
            )
        return result

    def create_database(self, name: str) -> str:
        """CREATE DATABASE `name` (UTF8, locale C like the cluster); returns its URL."""
        self._client("createdb", "--", name)
        return self.database_url(name)

    def dump(self, database: str, path: Path) -> Path:
        """`pg_dump -Fc` of `database` into `path` (a custom-format archive that pg_restore reads)."""
        self._client("pg_dump", "-Fc", "-f", str(path), "--", database, timeout=300)
        return path

    def stop(self, timeout: float = 15) -> int:
        """Fast shutdown (SIGINT: roll back open transactions, close connections); SIGKILL after `timeout` s."""
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGINT)
                try:
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        finally:
            if self.private_dir is not None:
                shutil.rmtree(self.private_dir, ignore_errors=True)
        return self.proc.returncode


def start_postgres(directory: Path, timeout: float = 60) -> PostgresServer:
    """initdb a new cluster under `directory` and start it on 127.0.0.1 on a free port; return once it accepts
    connections. The server's log is `directory/postgres.log`. Stop it with `stop()` (or use `running_postgres`).
    """
    bin_dir = find_bin_dir()
    run_as = _RunAs.current()
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    log_path = directory / "postgres.log"

    # The cluster and the socket live in a directory its user owns. As root, pytest's tmp_path is under a
    # mode-0700 root directory the `postgres` user cannot enter: then use a private directory in the system's
    # temporary directory instead (removed by stop()). Likewise when the socket path would be too long.
    private_dir = None
    base = directory / "cluster"
    socket_probe = base / "run" / ".s.PGSQL.65535.lock"
    if not run_as.can_enter(directory) or len(str(socket_probe)) > MAX_SOCKET_PATH:
        private_dir = Path(tempfile.mkdtemp(prefix="pytest-postgres-"))
        run_as.own(private_dir)
        base = private_dir / "cluster"
        if not run_as.can_enter(private_dir.parent):
            shutil.rmtree(private_dir)
            raise PostgresError(
                f"user {run_as.name} cannot enter {private_dir.parent}: set TMPDIR to another directory"
            )
    try:
        base.mkdir(mode=0o700)
        (base / "run").mkdir(mode=0o700)
        run_as.own(base)
        run_as.own(base / "run")
        data_dir = base / "data"
        started = time.monotonic()
        _initdb(bin_dir, data_dir, run_as, log_path)
        server = _start(bin_dir, data_dir, base / "run", log_path, run_as, timeout)
    except BaseException:
        if private_dir is not None:
            shutil.rmtree(private_dir, ignore_errors=True)
        raise
    server.private_dir = private_dir
    server.start_seconds = time.monotonic() - started
    return server


@contextmanager
def running_postgres(directory: Path, timeout: float = 60) -> Iterator[PostgresServer]:
    """`start_postgres(directory)`, stopped at the end."""
    server = start_postgres(directory, timeout)
    try:
        yield server
    finally:
        server.stop()


def _initdb(bin_dir: Path, data_dir: Path, run_as: _RunAs, log_path: Path) -> None:
    command = [
        str(bin_dir / "initdb"),
        "--pgdata",
        str(data_dir),
        "--username",
        SUPERUSER,
        "--auth",
        "trust",  # local socket and 127.0.0.1/::1 only: initdb's pg_hba.conf has no other hosts
        "--encoding",
        "UTF8",
        "--locale",
        "C",
        "--no-sync",
    ]
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=120,
        env=_client_env(),
        cwd=data_dir.parent,  # a cwd the server's user can enter (initdb resolves paths against it)
        **run_as.popen_kwargs(),
    )
    with log_path.open("a") as log:
        log.write(f"$ {' '.join(command)}\n{result.stdout}{result.stderr}\n")
    if result.returncode != 0:
        raise PostgresError(f"initdb exited with {result.returncode}:\n{result.stdout}{result.stderr}")


def _start(
    bin_dir: Path, data_dir: Path, socket_dir: Path, log_path: Path, run_as: _RunAs, timeout: float
) -> PostgresServer:
    # free_port() can race with another process taking the port: a failed bind is retried on a new one.
    for _attempt in range(3):
        port = free_port()
        offset = log_path.stat().st_size if log_path.exists() else 0
        command = [
            str(bin_dir / "postgres"),
            "-D",
            str(data_dir),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            f"port={port}",
            "-c",
            f"unix_socket_directories={socket_dir}",
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
            "-c",
            "shared_buffers=16MB",
            "-c",
            "max_connections=50",
        ]
        with log_path.open("ab") as log:
            log.write(f"$ {' '.join(command)}\n".encode())
            log.flush()
            proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=_client_env(),
                cwd=data_dir,
                **run_as.popen_kwargs(),
            )
        server = PostgresServer(bin_dir, data_dir, socket_dir, log_path, port, proc)
        try:
            wait_until(lambda server=server: _accepting(server), timeout, f"PostgreSQL on port {server.port}")
        except _Exited:
            with log_path.open(errors="replace") as log:
                log.seek(offset)
                output = log.read()
            if BIND_FAILED.search(output):
                continue
            raise PostgresError(f"postgres exited with {proc.returncode} during start-up:\n{output}") from None
        except BaseException as exc:
            server.stop()
            if isinstance(exc, TimeoutError):
                raise PostgresError(f"{exc}; server log:\n{server.log()[-4000:]}") from None
            raise
        return server
    raise PostgresError(f"postgres could not bind a free port in 3 attempts; log: {log_path}")


class _Exited(Exception):
    pass


def _accepting(server: PostgresServer) -> bool:
    if server.proc.poll() is not None:
        raise _Exited
    result = subprocess.run(
        [
            str(server.bin_dir / "pg_isready"),
            "-q",
            "-h",
            server.host,
            "-p",
            str(server.port),
            "-U",
            SUPERUSER,
            "-d",
            SUPERUSER,
            "-t",
            "1",
        ],
        env=_client_env(),
        timeout=10,
        check=False,
    )
    return result.returncode == 0  # 1: rejecting (starting up), 2: no answer yet
