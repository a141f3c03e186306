"""The chat history as a part of the service: the database opened and migrated at start, or off with a reason.

When the database cannot be opened or was written by a newer release, the chat keeps answering without
history, and `problem` says why: each new chat shows it, /readyz carries it, and `chat_history_up` is 0. A
crash loop would help nobody: the answer is a person fixing the database, and the chat can say so.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from foundry_chat.database import (
    UNREACHABLE,
    SchemaTooNew,
    create_engine,
    database_url,
    describe,
    explain,
    migrate,
)
from foundry_chat.metrics import ChatMetrics
from foundry_chat.settings import Settings

if TYPE_CHECKING:
    from foundry_chat.data_layer import ChatDataLayer

log = structlog.get_logger("foundry_chat.history")

AUTH_SECRET_FILE = "auth-secret"  # noqa: S105 (a file name, not a secret)


class History:
    def __init__(self, settings: Settings, metrics: ChatMetrics) -> None:
        self.enabled = settings.chat_history
        self.metrics = metrics
        self.url = database_url(settings.database_url, settings.chat_data_dir) if self.enabled else ""
        self.where = describe(self.url) if self.enabled else "off (CHAT_HISTORY=false)"
        self.layer: ChatDataLayer | None = None
        self.problem: str | None = None
        self.wait_seconds = settings.database_wait_seconds

    @property
    def active(self) -> ChatDataLayer | None:
        """The data layer while the history works; None when it is off or failed at start."""
        return self.layer if self.problem is None else None

    async def start(self) -> None:
        if not self.enabled:
            return
        # Imported here: the data layer imports Chainlit, which must not load before its folder is prepared.
        from foundry_chat.data_layer import ChatDataLayer

        self.layer = ChatDataLayer(create_engine(self.url), self.metrics)
        try:
            done = await self._migrate_when_reachable(self.layer)
        except SchemaTooNew as exc:
            self._fail(str(exc))
        except Exception as exc:  # cannot open or create it: say what and where, keep chatting
            reason, advice = explain(exc)
            self._fail(f"{reason} ({self.where}): {advice}", error=str(exc))
        else:
            self.metrics.history_up.set(1)
            log.info("history_ready", database=self.where, migrations=done or None)

    async def _migrate_when_reachable(self, layer: ChatDataLayer) -> list[str]:
        """Migrate, retrying for DATABASE_WAIT_SECONDS while the database cannot be reached: in a Swarm stack
        PostgreSQL may start after the chat (stack files have no `depends_on` conditions). The service answers
        its health check only once this is done, so no replica takes users before it has its history."""
        deadline = time.monotonic() + self.wait_seconds
        delay = 0.5
        while True:
            try:
                return await migrate(layer.engine)
            except SchemaTooNew:
                raise
            except Exception as exc:
                reason, _ = explain(exc)
                if reason != UNREACHABLE or time.monotonic() + delay > deadline:
                    raise
                log.warning("history_waiting", database=self.where, reason=reason, retry_in=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _fail(self, problem: str, **details: str) -> None:
        self.problem = problem
        self.metrics.history_up.set(0)
        log.error("history_off", database=self.where, problem=problem, **details)

    async def close(self) -> None:
        if self.layer is not None:
            await self.layer.close()


def auth_secret(settings: Settings) -> tuple[str, str]:
    """The key that signs login tokens, and where it came from (for the log, never the key).

    CHAINLIT_AUTH_SECRET when set. Otherwise, with the history on, a key generated once and kept in
    CHAT_DATA_DIR (logins then survive restarts, as the threads do); with it off, a random key per start.
    """
    if settings.chainlit_auth_secret is not None:
        return settings.chainlit_auth_secret.get_secret_value(), "CHAINLIT_AUTH_SECRET"
    if not settings.chat_history:
        return secrets.token_urlsafe(48), "a random key per start (logins end at a restart)"
    path = Path(settings.chat_data_dir).resolve() / AUTH_SECRET_FILE
    try:
        return path.read_text(encoding="utf-8").strip(), f"the key in {path}"
    except FileNotFoundError:
        pass
    key = secrets.token_urlsafe(48)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # O_EXCL: when two processes start together, one writes and the other reads what it wrote.
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text(encoding="utf-8").strip(), f"the key in {path}"
    except OSError as exc:  # a read-only data directory: the history says so too; logins still work
        return key, f"a random key per start ({path} cannot be written: {exc.strerror})"
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(key)
    return key, f"a key generated into {path}"
