"""Login hardening (foundry_chat.login_guard, chainlit_root): the login's rate limit, bad tokens refused without a
traceback, and CORS limited to CHAT_ALLOWED_ORIGINS."""

from __future__ import annotations

import asyncio
import logging
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest
import socketio
from chat_support import (
    ChainlitClient,
    ChatProcess,
    PacedUpstream,
    connected,
    login,
    start_chat,
    start_paced_upstream,
)
from starlette.exceptions import HTTPException

from foundry_chat.chainlit_root import prepare_chainlit_root, toml_strings
from foundry_chat.login_guard import (
    AUTH_EXCEPTION_MESSAGE,
    FailedLogins,
    QuietTokenRefusals,
    quiet_token_refusals,
    same_origin_or,
)
from tests.support.process import log_events, wait_until

PASSWORD = "correct horse battery"
SECRET = "s3cret-for-the-guard-tests-" + "x" * 24
# chainlit.logger.logger (not imported here: importing Chainlit writes its config folder).
chainlit_logger = logging.getLogger("chainlit")
TOOLS_ORIGIN = "http://tools.example"
EVIL_ORIGIN = "http://evil.example"
THREADS_QUERY = {"pagination": {"first": 5, "cursor": None}, "filter": {}}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def fail(guard: FailedLogins, client: str) -> int | None:
    """One wrong password as the middleware sees it: None when it went through (and failed), else the wait."""
    wait = guard.begin(client)
    if wait is None:
        guard.end(client, 401)
    return wait


# The failure counter, with a fake clock.


@pytest.mark.unit
def test_failures_in_the_window_lock_the_client_out_until_the_oldest_leaves() -> None:
    clock = FakeClock()
    guard = FailedLogins(max_failures=3, window_seconds=10, clock=clock)
    for _ in range(3):
        assert fail(guard, "10.0.0.1") is None
        clock.now += 1
    # Failures at 1000, 1001, 1002; now 1003: the one at 1000 leaves the window at 1010.
    assert guard.begin("10.0.0.1") == 7
    assert guard.begin("10.0.0.2") is None, "another client is not affected"
    guard.end("10.0.0.2", 401)
    clock.now = 1009.5
    assert guard.begin("10.0.0.1") == 1, "rounded up: waiting less would be refused again"
    clock.now = 1010
    # A sliding window: one failure has left, so one more attempt gets through, and its failure locks again.
    assert fail(guard, "10.0.0.1") is None
    assert guard.failures("10.0.0.1") == 3
    assert guard.begin("10.0.0.1") == 1, "the next failure to leave is the one at 1001"
    clock.now = 1011
    assert guard.begin("10.0.0.1") is None


@pytest.mark.unit
def test_a_successful_login_clears_the_clients_failures() -> None:
    clock = FakeClock()
    guard = FailedLogins(max_failures=3, window_seconds=60, clock=clock)
    assert fail(guard, "a") is None and fail(guard, "a") is None
    assert guard.begin("a") is None
    guard.end("a", 200)
    assert guard.failures("a") == 0 and len(guard) == 0
    assert [fail(guard, "a") for _ in range(4)] == [None, None, None, 60]
    # Other answers (a bad form, Chainlit's error) neither count nor clear.
    assert guard.begin("b") is None
    guard.end("b", 422)
    assert guard.failures("b") == 0
    assert guard.failures("a") == 3


@pytest.mark.unit
def test_logins_in_progress_count_so_a_burst_cannot_pass_together() -> None:
    guard = FailedLogins(max_failures=2, window_seconds=60, clock=FakeClock())
    assert guard.begin("a") is None and guard.begin("a") is None
    assert guard.begin("a") == 1, "two in progress: a third waits for them"
    guard.end("a", None)  # no answer (the client went away): released, not counted
    assert guard.failures("a") == 0
    assert guard.begin("a") is None


@pytest.mark.unit
def test_memory_stays_bounded() -> None:
    clock = FakeClock()
    guard = FailedLogins(max_failures=3, window_seconds=10, max_clients=4, clock=clock)
    for n in range(6):
        guard.failed(f"client-{n}")
        clock.now += 1
    assert len(guard) == 4, "capped"
    assert guard.failures("client-0") == guard.failures("client-1") == 0, "the oldest were dropped"
    assert guard.failures("client-5") == 1
    for _ in range(100):
        guard.failed("client-5")
    assert guard.failures("client-5") == 3, "no more times kept than the limit needs"
    clock.now += 9  # 1015: the window holds the failures after 1005
    assert len(guard) == 1, "only client-5 failed within the window"
    clock.now += 10
    assert len(guard) == 0, "clients whose failures have all expired are forgotten"


@pytest.mark.unit
def test_a_lockout_is_reported_once() -> None:
    clock = FakeClock()
    guard = FailedLogins(max_failures=2, window_seconds=10, clock=clock)
    assert not guard.first_refusal("a"), "no lockout"
    fail(guard, "a")
    fail(guard, "a")
    assert [guard.first_refusal("a") for _ in range(3)] == [True, False, False]
    clock.now += 10
    fail(guard, "a")
    fail(guard, "a")
    assert guard.first_refusal("a"), "a new lockout after the window"


# The Socket.IO token traceback becomes one warning line.


def token_error(token: str) -> HTTPException:
    """What chainlit.auth.authenticate_user raises for a token that does not decode."""
    try:
        jwt.decode(token, SECRET, algorithms=["HS256"])
    except jwt.InvalidTokenError as e:
        error = HTTPException(status_code=401, detail="Invalid authentication token")
        error.__cause__ = e
        return error
    raise AssertionError("the token decoded")


def logged_by_chainlit(caplog: pytest.LogCaptureFixture, error: Exception, message: str) -> logging.LogRecord:
    quiet_token_refusals()
    quiet_token_refusals()  # idempotent
    assert sum(isinstance(f, QuietTokenRefusals) for f in chainlit_logger.filters) == 1
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="chainlit"):
        try:
            raise error
        except Exception as e:
            chainlit_logger.exception(message, e)
    [record] = caplog.records
    return record


@pytest.mark.unit
def test_a_bad_token_on_socketio_is_one_warning_line(caplog: pytest.LogCaptureFixture) -> None:
    forged = jwt.encode({"identifier": "admin", "metadata": {}}, "another-secret-" + "y" * 32, algorithm="HS256")
    expired = jwt.encode({"identifier": "admin", "metadata": {}, "exp": int(time.time()) - 60}, SECRET)
    for token, word in ((forged, "invalid"), (expired, "expired"), ("not.a.token", "invalid")):
        record = logged_by_chainlit(caplog, token_error(token), AUTH_EXCEPTION_MESSAGE)
        assert record.levelno == logging.WARNING and record.exc_info is None
        assert record.getMessage() == f"refused a Socket.IO connection: {word} login token"
        assert "Traceback" not in caplog.text


@pytest.mark.unit
def test_other_chainlit_records_keep_their_traceback(caplog: pytest.LogCaptureFixture) -> None:
    for error, message in (
        (RuntimeError("a bug while checking the token"), AUTH_EXCEPTION_MESSAGE),
        (HTTPException(status_code=500), AUTH_EXCEPTION_MESSAGE),
        (token_error("not.a.token"), "Unable to get persisted_user from data layer: %s"),
    ):
        record = logged_by_chainlit(caplog, error, message)
        assert record.levelno == logging.ERROR and record.exc_info is not None
        assert "Traceback" in caplog.text


# CORS origins in Chainlit's config.


@pytest.mark.unit
def test_allowed_origins_are_written_as_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHAINLIT_APP_ROOT", str(tmp_path))
    config = tmp_path / ".chainlit" / "config.toml"
    prepare_chainlit_root([])
    assert tomllib.loads(config.read_text())["project"]["allow_origins"] == []
    prepare_chainlit_root([TOOLS_ORIGIN + "/", "https://a.example:8443"])
    assert tomllib.loads(config.read_text())["project"]["allow_origins"] == [TOOLS_ORIGIN, "https://a.example:8443"]
    odd = ['quote " backslash \\ ', "tab\tnewline\n", "del \x7f", "émoji 😀", "{braces}", "'single'"]
    assert tomllib.loads(f"a = {toml_strings(odd)}")["a"] == odd


# Against a real chat process.


@pytest.fixture(scope="module")
def upstream() -> Iterator[PacedUpstream]:
    service = start_paced_upstream()
    try:
        yield service
    finally:
        service.stop()


def start_guarded(tmp_path_factory: pytest.TempPathFactory, upstream: PacedUpstream, name: str, **env: str):
    tmp = tmp_path_factory.mktemp(name)
    service = start_chat(
        tmp,
        [upstream.url],
        CHAT_PASSWORD=PASSWORD,
        CHAINLIT_AUTH_SECRET=SECRET,
        CHAT_DATA_DIR=str(tmp / "data"),
        LOGIN_MAX_FAILURES="3",
        **env,
    )
    try:
        service.wait_healthy()
    except BaseException:
        service.stop()
        raise
    return service


@pytest.fixture(scope="module")
def guarded(upstream: PacedUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChatProcess]:
    """A login, 3 failures in the default window (300 s: a lockout outlasts the test), no CORS origin."""
    service = start_guarded(tmp_path_factory, upstream, "guarded")
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture(scope="module")
def brief(upstream: PacedUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChatProcess]:
    """A login, 3 failures in a 2 s window; the tools' origin may call the API."""
    service = start_guarded(
        tmp_path_factory, upstream, "brief", LOGIN_WINDOW_SECONDS="2", CHAT_ALLOWED_ORIGINS=TOOLS_ORIGIN
    )
    try:
        yield service
    finally:
        service.stop()


@pytest.mark.integration
def test_too_many_wrong_passwords_get_429_even_for_the_right_one(guarded: ChatProcess) -> None:
    assert [login(guarded.url, "admin", f"wrong {n}").status_code for n in range(3)] == [401, 401, 401]
    for password in ("wrong again", PASSWORD):
        response = login(guarded.url, "admin", password)
        assert response.status_code == 429, response.text
        wait = int(response.headers["Retry-After"])
        assert 1 <= wait <= 300
        assert response.json() == {"detail": f"Too many failed logins from this address: try again in {wait} s."}
        assert "access_token" not in response.cookies
    # Chainlit's login never ran for the refused ones: only the three failures reached the password check.
    assert len(guarded.events("login_failed")) == 3 and not guarded.events("login_succeeded")
    [limited] = guarded.events("login_rate_limited")  # once per lockout, not per refusal
    assert limited["client"] == "127.0.0.1" and limited["logger"] == "foundry_chat.login_guard"
    # Only the login is limited: probes, the page and the API still answer.
    for path in ("/healthz", "/readyz", "/metrics", "/", "/auth/config"):
        assert guarded.get(path).status_code == 200, path
    assert httpx.post(f"{guarded.url}/logout", timeout=5).status_code == 200
    assert login(guarded.url, "admin", PASSWORD).status_code == 429, "still locked out"


@pytest.mark.integration
def test_after_the_window_the_right_password_works_and_clears_the_failures(brief: ChatProcess) -> None:
    # Fail until locked out (with a 2 s window, a slow machine may need more than three attempts).
    for _ in range(30):
        response = login(brief.url, "admin", "wrong password")
        if response.status_code == 429:
            break
        assert response.status_code == 401
    assert response.status_code == 429, "never locked out"
    assert 1 <= int(response.headers["Retry-After"]) <= 2

    logged_in: list[httpx.Response] = []

    def right_password_works() -> bool:
        response = login(brief.url, "admin", PASSWORD)
        assert response.status_code in (200, 429), response.text
        logged_in.append(response)
        return response.status_code == 200

    wait_until(right_password_works, 15, "the lockout to end", interval=0.2)
    token = logged_in[-1].cookies["access_token"]
    assert jwt.decode(token, SECRET, algorithms=["HS256"])["identifier"] == "admin"
    # The success cleared the failures: two more wrong ones are only 401 (three would lock out again).
    for _ in range(2):
        assert login(brief.url, "admin", "wrong password").status_code == 401
    assert login(brief.url, "admin", PASSWORD).status_code == 200
    assert [login(brief.url, "admin", "wrong password").status_code for _ in range(2)] == [401, 401]


def token(secret: str, expires_in: float) -> str:
    claims = {"identifier": "admin", "metadata": {"provider": "password"}, "exp": int(time.time() + expires_in)}
    return jwt.encode(claims, secret, algorithm="HS256")


@pytest.mark.integration
def test_forged_and_expired_tokens_are_refused_without_a_traceback(guarded: ChatProcess) -> None:
    forged = token("another-secret-" + "y" * 32, 3600)
    expired = token(SECRET, -60)
    valid = token(SECRET, 3600)
    threads = f"{guarded.url}/project/threads"

    def post(**kwargs) -> httpx.Response:
        return httpx.post(threads, json=THREADS_QUERY, timeout=5, **kwargs)

    assert post(headers={"Authorization": f"Bearer {valid}"}).status_code == 200, "a good token is accepted"
    for bad in (forged, expired):
        for kwargs in ({"headers": {"Authorization": f"Bearer {bad}"}}, {"cookies": {"access_token": bad}}):
            response = post(**kwargs)
            assert (response.status_code, response.json()) == (401, {"detail": "Invalid authentication token"})

    async def scenario() -> None:
        for bad in (forged, expired):
            client = ChainlitClient(guarded.url, cookies={"access_token": bad})
            with pytest.raises(socketio.exceptions.ConnectionError):
                await client.connect()
            assert client.events.empty(), "nothing was sent to a refused connection"
        async with connected(guarded.url, cookies={"access_token": valid}):
            pass

    asyncio.run(scenario())

    def chainlit_refusals() -> int:  # Chainlit's own line after each refusal, whatever it logged before
        return sum("Authentication failed in websocket connect" in e["event"] for e in log_events(guarded.log_path))

    wait_until(lambda: chainlit_refusals() == 2, 10, "Chainlit to log the two refusals")
    log = guarded.log()
    assert "Traceback" not in log
    warnings = [e for e in log_events(guarded.log_path) if e["event"].startswith("refused a Socket.IO")]
    assert [(e["event"], e["level"]) for e in warnings] == [
        ("refused a Socket.IO connection: invalid login token", "warning"),
        ("refused a Socket.IO connection: expired login token", "warning"),
    ]
    assert SECRET not in log and forged not in log and expired not in log


def preflight(chat: ChatProcess, origin: str) -> httpx.Response:
    return httpx.options(
        f"{chat.url}/project/threads",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
        timeout=5,
    )


@pytest.mark.integration
def test_other_origins_get_no_cors_unless_allowed(guarded: ChatProcess, brief: ChatProcess) -> None:
    for chat, origin in ((guarded, EVIL_ORIGIN), (guarded, TOOLS_ORIGIN), (brief, EVIL_ORIGIN)):
        response = preflight(chat, origin)
        assert "access-control-allow-origin" not in response.headers, (chat.url, origin)
        simple = httpx.get(f"{chat.url}/project/settings", headers={"Origin": origin}, timeout=5)
        assert "access-control-allow-origin" not in simple.headers
    allowed = preflight(brief, TOOLS_ORIGIN)
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == TOOLS_ORIGIN
    assert allowed.headers["access-control-allow-credentials"] == "true"
    # The chat's own page needs no CORS: its API answers a same-origin call with a login.
    valid = token(SECRET, 3600)
    own = httpx.post(f"{guarded.url}/project/threads", json=THREADS_QUERY, cookies={"access_token": valid}, timeout=5)
    assert own.status_code == 200


@pytest.mark.unit
def test_socket_origins_are_the_pages_own_or_the_allowed_ones() -> None:
    check = same_origin_or([TOOLS_ORIGIN + "/"])
    own = {"HTTP_HOST": "localhost:8080"}
    assert check("http://localhost:8080", own)
    assert check(None, own), "no Origin: not a browser page"
    assert check(TOOLS_ORIGIN, own)
    assert not check(EVIL_ORIGIN, own)
    assert not check("http://localhost:3000", own), "another port of the same host is another page"
    behind_proxy = {"HTTP_HOST": "chat-app:8080", "HTTP_X_FORWARDED_HOST": "chat.example"}
    assert check("https://chat.example", behind_proxy)


@pytest.mark.integration
def test_a_page_of_another_origin_cannot_open_the_chats_socket(guarded: ChatProcess, brief: ChatProcess) -> None:
    cookies = {"access_token": token(SECRET, 3600)}
    own_origin = guarded.url  # http://127.0.0.1:PORT: the page the chat serves

    async def connect(chat: ChatProcess, origin: str) -> bool:
        client = ChainlitClient(chat.url, cookies=cookies, origin=origin)
        try:
            await client.connect()
        except socketio.exceptions.ConnectionError:
            return False
        await client.close()
        return True

    assert asyncio.run(connect(guarded, own_origin))
    assert not asyncio.run(connect(guarded, EVIL_ORIGIN))
    assert not asyncio.run(connect(guarded, own_origin.rsplit(":", 1)[0] + ":1")), "another port"
    assert asyncio.run(connect(brief, TOOLS_ORIGIN)), "CHAT_ALLOWED_ORIGINS lets that page in"
