"""Login hardening: a rate limit on the password login, and bad tokens refused without a traceback.

With a password login, `POST /login` is Chainlit's; the outer app's middleware below counts its answers.
A client (its address as uvicorn gives it; no X-Forwarded-For is read here) with LOGIN_MAX_FAILURES failed
logins (401) within LOGIN_WINDOW_SECONDS gets 429 with Retry-After, without Chainlit seeing the attempt, so even
the right password waits; a successful login (200) clears the client's failures. Logins in progress count against
the limit too, so that a burst of parallel attempts cannot all pass before the first one fails.

Chainlit's REST routes already refuse a forged or expired token with 401; its Socket.IO `connect` handler refuses
it too but logs a traceback (`logger.exception`), which `QuietTokenRefusals` turns into one warning line.
Socket.IO also gets an origin check (`same_origin_or`), which Chainlit leaves off.
"""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import structlog
from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from foundry_chat.settings import Settings

log = structlog.get_logger("foundry_chat.login_guard")

LOGIN_PATHS = {"/login", "/login/"}
MAX_CLIENTS = 10_000
# Chainlit's message in socket.py's connect handler when checking the connection's token raised.
AUTH_EXCEPTION_MESSAGE = "Exception authenticating connection: %s"


@dataclass
class _Client:
    failures: deque[float]  # clock times of the failures in the window, oldest first
    reported: bool = False  # login_rate_limited was logged for the current lockout


@dataclass
class FailedLogins:
    """Failed logins per client in a sliding window, and the logins in progress; pure logic, `clock` injectable.

    Memory stays bounded: a client is forgotten once its failures have all left the window, at most `max_clients`
    are kept (the least recently failed is dropped first), and each keeps at most `max_failures` times.
    """

    max_failures: int
    window_seconds: float
    max_clients: int = MAX_CLIENTS
    clock: Callable[[], float] = time.monotonic
    # Least recently failed first: the expired clients are at the front, and so is the one dropped at the cap.
    _clients: OrderedDict[str, _Client] = field(default_factory=OrderedDict, init=False, repr=False)
    _in_progress: dict[str, int] = field(default_factory=dict, init=False, repr=False)

    def __len__(self) -> int:
        """The number of clients tracked (with failures in the window)."""
        self._forget_expired()
        return len(self._clients)

    def failures(self, client: str) -> int:
        entry = self._current(client)
        return len(entry.failures) if entry else 0

    def begin(self, client: str) -> int | None:
        """Before a login: None to let it through (it is then in progress until `end`), or the seconds to wait."""
        entry = self._current(client)
        failures = len(entry.failures) if entry else 0
        in_progress = self._in_progress.get(client, 0)
        if failures + in_progress < self.max_failures:
            self._in_progress[client] = in_progress + 1
            return None
        if entry is None or failures < self.max_failures:
            return 1  # refused for the logins still in progress: they end in a moment
        # When the oldest counted failure leaves the window, the next attempt gets through.
        return max(1, math.ceil(entry.failures[0] + self.window_seconds - self.clock()))

    def end(self, client: str, status: int | None) -> None:
        """After a login that `begin` let through, with its status: 401 failed, 200 succeeded (None: no answer)."""
        left = self._in_progress.pop(client, 0) - 1
        if left > 0:
            self._in_progress[client] = left
        if status == 401:
            self.failed(client)
        elif status == 200:
            self.succeeded(client)

    def failed(self, client: str) -> None:
        entry = self._current(client) or _Client(deque(maxlen=self.max_failures))
        entry.failures.append(self.clock())
        self._clients[client] = entry
        self._clients.move_to_end(client)
        self._forget_expired()
        while len(self._clients) > self.max_clients:
            self._clients.popitem(last=False)

    def succeeded(self, client: str) -> None:
        self._clients.pop(client, None)

    def first_refusal(self, client: str) -> bool:
        """Whether a refusal is the first of the client's lockout (logged once: an attack would flood the log).
        Refusals for logins in progress only are not a lockout: False."""
        entry = self._current(client)
        if entry is None or len(entry.failures) < self.max_failures or entry.reported:
            return False
        entry.reported = True
        return True

    def _current(self, client: str) -> _Client | None:
        """The client's entry without its expired failures; None (and forgotten) when none is left."""
        entry = self._clients.get(client)
        if entry is None:
            return None
        horizon = self.clock() - self.window_seconds
        while entry.failures and entry.failures[0] <= horizon:
            entry.failures.popleft()
            entry.reported = False  # below the limit again: a new lockout is logged anew
        if not entry.failures:
            del self._clients[client]
            return None
        return entry

    def _forget_expired(self) -> None:
        # Ordered by last failure: the clients whose failures have all expired are at the front.
        horizon = self.clock() - self.window_seconds
        while self._clients:
            name, entry = next(iter(self._clients.items()))
            if entry.failures and entry.failures[-1] > horizon:
                break
            del self._clients[name]


class LoginRateLimit:
    """Pure ASGI middleware: counts the answers to `POST /login` and refuses a client over the limit with 429.

    Everything else (other routes, streaming answers, Socket.IO, lifespan) passes through untouched.
    """

    def __init__(self, app: ASGIApp, failed_logins: FailedLogins) -> None:
        self.app = app
        self.failed_logins = failed_logins

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in LOGIN_PATHS:
            await self.app(scope, receive, send)
            return
        client = scope["client"][0] if scope.get("client") else "unknown"
        wait = self.failed_logins.begin(client)
        if wait is not None:
            if self.failed_logins.first_refusal(client):
                log.warning("login_rate_limited", client=client, retry_after=wait)
            response = JSONResponse(
                {"detail": f"Too many failed logins from this address: try again in {wait} s."},
                status_code=429,
                headers={"Retry-After": str(wait)},
            )
            await response(scope, receive, send)
            return

        status: int | None = None

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start" and status is None:
                status = message["status"]
                # Counted before the answer leaves: the client's next attempt already sees it.
                self.failed_logins.end(client, status)
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            if status is None:
                self.failed_logins.end(client, None)


class QuietTokenRefusals(logging.Filter):
    """Chainlit's Socket.IO traceback for a forged or expired token becomes one warning line; nothing else changes.

    Chainlit refuses the connection either way (and logs "Authentication failed in websocket connect." after it).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg != AUTH_EXCEPTION_MESSAGE or not record.exc_info:
            return True
        error = record.exc_info[1]
        # What chainlit.auth.authenticate_user raises for a token that does not decode: anything else keeps its
        # traceback.
        if not isinstance(error, HTTPException) or error.status_code != 401:
            return True
        expired = type(error.__cause__).__name__ == "ExpiredSignatureError"
        record.msg = f"refused a Socket.IO connection: {'expired' if expired else 'invalid'} login token"
        record.args = ()
        record.exc_info = None
        record.exc_text = None
        record.stack_info = None
        record.levelno = logging.WARNING
        record.levelname = logging.getLevelName(logging.WARNING)
        return True


def quiet_token_refusals() -> None:
    logger = logging.getLogger("chainlit")  # chainlit.logger.logger, without importing Chainlit
    if not any(isinstance(f, QuietTokenRefusals) for f in logger.filters):
        logger.addFilter(QuietTokenRefusals())


def same_origin_or(allowed: list[str]) -> Callable[[str | None, dict], bool]:
    """Engine.IO's origin check: the page's own origin (its Host, or the proxy's X-Forwarded-Host), or `allowed`.

    Chainlit turns the check off (`cors_allowed_origins=[]`), and browsers apply no CORS to WebSockets: any page
    the visitor opens, on any port of the same host, could talk to the chat as them (the login cookie is SameSite=Lax,
    which ignores ports).
    """
    listed = {origin.rstrip("/") for origin in allowed}

    def check(origin: str | None, environ: dict) -> bool:
        if not origin:
            return True  # not a browser: no page to protect the visitor from
        hosts = {environ.get("HTTP_HOST"), environ.get("HTTP_X_FORWARDED_HOST", "").split(",")[0].strip()}
        return urlsplit(origin).netloc in hosts - {None, ""} or origin.rstrip("/") in listed

    return check


def install_login_guard(app: FastAPI, settings: Settings) -> None:
    """Add the login's rate limit to `app` and quiet Chainlit's token tracebacks; call after mounting Chainlit."""
    from chainlit.server import sio

    # Always: bad tokens reach Socket.IO whatever the login (a password, or Chainlit's header login).
    quiet_token_refusals()
    sio.eio.cors_allowed_origins = same_origin_or(settings.chat_allowed_origins)
    if settings.login_required:
        failed_logins = FailedLogins(settings.login_max_failures, settings.login_window_seconds)
        app.add_middleware(LoginRateLimit, failed_logins=failed_logins)
