"""Who is chatting: the local user by default, accounts with passwords (CHAT_PASSWORD, CHAT_USERS) when set."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import jwt
import pytest
import socketio
from chat_support import ChainlitClient, ChatProcess, connected, login, start_chat

from foundry_chat.auth import credentials_match
from foundry_chat.settings import Settings
from tests.support.process import GatewayProcess, log_events

PASSWORD = "correct horse battery"
SECRET = "s3cret-for-the-tests-" + "x" * 24
# What the login page shows for a failed login: it looks the response's status text ("Unauthorized") up in the
# served translation (foundry_chat.chainlit_root adds it; Chainlit's own has none, so it said "Unable to sign in").
LOGIN_FAILED_TEXT = "Wrong username or password."


def login_settings(**env: str) -> Settings:
    return Settings(**{"CHAT_PASSWORD": PASSWORD, "CHAT_USERNAME": "admin", **env})


@pytest.mark.unit
def test_only_the_configured_name_and_password_match() -> None:
    settings = login_settings()
    assert credentials_match(settings, "admin", PASSWORD)
    assert not credentials_match(settings, "admin", PASSWORD + " ")
    assert not credentials_match(settings, "Admin", PASSWORD)
    assert not credentials_match(settings, "admin", "")
    # Any text the form may carry: non-ASCII (hmac.compare_digest refuses non-ASCII str) and broken Unicode.
    assert not credentials_match(settings, "ädmin\ud800", "pässwörd ✓")
    unicode_settings = login_settings(CHAT_PASSWORD="pässwörd ✓", CHAT_USERNAME="zoë")
    assert credentials_match(unicode_settings, "zoë", "pässwörd ✓")


@pytest.mark.unit
def test_no_password_means_no_login_at_all() -> None:
    settings = Settings(CHAT_PASSWORD="", CHAINLIT_AUTH_SECRET="")
    assert not settings.login_required
    assert not credentials_match(settings, "admin", "")


def start_with_login(
    tmp_path_factory: pytest.TempPathFactory, gateway: GatewayProcess, name: str, **env: str
) -> ChatProcess:
    service = start_chat(tmp_path_factory.mktemp(name), [f"{gateway.url}/v1"], CHAT_PASSWORD=PASSWORD, **env)
    service.wait_healthy()
    return service


@pytest.fixture(scope="module")
def guarded(gateway: GatewayProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChatProcess]:
    """The chat service with a login and a known token secret (so that tests can check the tokens)."""
    service = start_with_login(tmp_path_factory, gateway, "guarded", CHAINLIT_AUTH_SECRET=SECRET)
    try:
        yield service
    finally:
        service.stop()


def access_token(chat: ChatProcess) -> str:
    response = login(chat.url, "admin", PASSWORD)
    assert response.status_code == 200, response.text
    return response.cookies["access_token"]


async def refused(chat: ChatProcess, cookies: dict[str, str]) -> ChainlitClient:
    client = ChainlitClient(chat.url, cookies=cookies)
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect()
    return client


@pytest.mark.integration
def test_operational_routes_stay_open_and_chainlit_asks_for_the_login(guarded: ChatProcess) -> None:
    assert guarded.get("/healthz").status_code == 200
    assert guarded.get("/readyz").status_code == 200
    assert "chat_messages_total" in guarded.get("/metrics").text
    auth = guarded.get("/auth/config").json()
    assert auth["requireLogin"] is True and auth["passwordAuth"] is True
    assert guarded.get("/project/settings").status_code == 401
    assert guarded.get("/").status_code == 200, "the page loads, to show the login form"


@pytest.mark.integration
def test_a_socket_without_a_valid_login_is_refused_and_no_chat_starts(guarded: ChatProcess) -> None:
    forged = jwt.encode({"identifier": "admin", "metadata": {}}, "another-secret-" + "y" * 32, algorithm="HS256")

    async def scenario() -> list[ChainlitClient]:
        return [await refused(guarded, cookies) for cookies in ({}, {"access_token": forged})]

    for client in asyncio.run(scenario()):
        assert not client.sio.connected
        assert client.events.empty(), "nothing was sent to a refused connection"
    refusals = [e for e in log_events(guarded.log_path) if "Authentication failed in websocket connect" in e["event"]]
    assert len(refusals) == 2
    assert guarded.metric("chat_active_sessions") == 0
    assert not [e for e in log_events(guarded.log_path) if e.get("event") == "prompt"]


@pytest.mark.integration
def test_a_wrong_password_gets_401_with_a_clear_message(guarded: ChatProcess) -> None:
    for username, password in [("admin", "wrong password"), ("root", PASSWORD), ("Admin", PASSWORD)]:
        response = login(guarded.url, username, password)
        assert (response.status_code, response.reason_phrase) == (401, "Unauthorized")
        assert "access_token" not in response.cookies
    # The page's words, in English and in a language that falls back to it.
    for language in ("en-US", "en-GB"):
        words = guarded.get(f"/project/translations?language={language}").json()["translation"]["auth"]["login"]
        assert words["errors"]["unauthorized"] == LOGIN_FAILED_TEXT
        assert words["form"]["email"]["label"] == "Username", "the form asks for CHAT_USERNAME, not an e-mail"
    assert sum(e.get("event") == "login_failed" for e in log_events(guarded.log_path)) >= 3


@pytest.mark.integration
def test_the_right_password_logs_in_and_the_session_can_chat(guarded: ChatProcess) -> None:
    token = access_token(guarded)
    assert jwt.decode(token, SECRET, algorithms=["HS256"])["identifier"] == "admin", "signed with CHAINLIT_AUTH_SECRET"
    settings = httpx.get(f"{guarded.url}/project/settings", cookies={"access_token": token}, timeout=5)
    assert settings.status_code == 200

    async def scenario():
        async with connected(guarded.url, cookies={"access_token": token}) as client:
            return await client.ask("hello")

    reply = asyncio.run(scenario())
    assert reply.streamed_text and "Could not answer" not in reply.final_text()
    log = guarded.log()
    assert PASSWORD not in log and SECRET not in log


@pytest.mark.integration
def test_without_a_secret_the_key_is_kept_with_the_history(
    gateway: GatewayProcess, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """No CHAINLIT_AUTH_SECRET: a key is generated into CHAT_DATA_DIR, so logins last as long as the threads."""
    data = tmp_path_factory.mktemp("kept-key")
    first = start_with_login(tmp_path_factory, gateway, "first-start", CHAT_DATA_DIR=str(data))
    try:
        token = access_token(first)
        starts = [e for e in log_events(first.log_path) if e.get("event") == "login_required"]
        assert starts and "generated into" in starts[0]["tokens_signed_with"]
        assert (data / "auth-secret").stat().st_mode & 0o777 == 0o600, "only the service's user reads the key"
    finally:
        first.stop()
    again = start_with_login(tmp_path_factory, gateway, "same-data", CHAT_DATA_DIR=str(data))
    try:

        async def chat_with(chat: ChatProcess) -> None:
            async with connected(chat.url, cookies={"access_token": token}):
                pass

        asyncio.run(chat_with(again))  # the same key: the login survived the restart
        assert (
            "the key in"
            in next(e for e in log_events(again.log_path) if e.get("event") == "login_required")["tokens_signed_with"]
        )
    finally:
        again.stop()
    elsewhere = start_with_login(tmp_path_factory, gateway, "other-data")
    try:
        asyncio.run(refused(elsewhere, {"access_token": token}))  # another key: that token means nothing there
    finally:
        elsewhere.stop()


@pytest.mark.integration
def test_with_the_history_off_and_no_secret_logins_end_at_a_restart(
    gateway: GatewayProcess, tmp_path_factory: pytest.TempPathFactory
) -> None:
    first = start_with_login(tmp_path_factory, gateway, "no-history", CHAT_HISTORY="false")
    try:
        starts = [e for e in log_events(first.log_path) if e.get("event") == "login_required"]
        assert starts and "random" in starts[0]["tokens_signed_with"]
    finally:
        first.stop()


@pytest.mark.integration
def test_without_a_password_every_visitor_is_the_local_user(chat: ChatProcess) -> None:
    """The thread list needs a user: the login page gets the local user's token at once (/auth/header)."""
    auth = chat.get("/auth/config").json()
    assert auth["requireLogin"] and auth["headerAuth"] and not auth["passwordAuth"]
    token = httpx.post(f"{chat.url}/auth/header", timeout=5).cookies["access_token"]
    assert jwt.decode(token, options={"verify_signature": False})["identifier"] == "local"

    async def scenario():
        async with connected(chat.url) as client:  # logs in as the page does
            return client.started

    assert asyncio.run(scenario()).named("chat_settings")


@pytest.mark.integration
def test_with_the_history_off_and_no_password_there_is_no_login(
    gateway: GatewayProcess, tmp_path_factory: pytest.TempPathFactory
) -> None:
    service = start_chat(tmp_path_factory.mktemp("no-login"), [f"{gateway.url}/v1"], CHAT_HISTORY="false")
    try:
        service.wait_healthy()
        auth = service.get("/auth/config").json()
        assert not auth["requireLogin"] and not auth["headerAuth"] and not auth["passwordAuth"]
        assert asyncio.run(ChainlitClient(service.url, cookies={}).connect()).named("chat_settings")
    finally:
        service.stop()
