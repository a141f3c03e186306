"""Who is chatting: accounts with passwords (CHAT_PASSWORD, CHAT_USERS), or one local user without a login.

Chainlit's thread list needs a user. With no password set and the history on, every visitor is the same
local user, logged in silently through Chainlit's header auth (its login page posts to /auth/header at once), so
past chats show out of the box. With passwords, each account has its own threads. Only Chainlit's routes ask
for the login: /healthz, /readyz and /metrics belong to the outer app and stay open for Docker and Prometheus.
"""

from __future__ import annotations

import hashlib
import hmac
import os

import structlog

from foundry_chat.persistence import auth_secret
from foundry_chat.settings import Settings

log = structlog.get_logger("foundry_chat.auth")

LOCAL_USER = "local"


def _digest(value: str) -> bytes:
    # Hashed first, so that the comparison takes the same time whatever the lengths; surrogatepass never raises
    # (the form may carry any text).
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()


def credentials_match(settings: Settings, username: str, password: str) -> bool:
    """Constant-time check of one login attempt against every account (the same work whichever matches)."""
    matched = False
    given_name, given_password = _digest(username), _digest(password)
    for name, secret in settings.accounts.items():
        name_ok = hmac.compare_digest(given_name, _digest(name))
        password_ok = hmac.compare_digest(given_password, _digest(secret))
        matched |= name_ok & password_ok
    return matched


def install_login(settings: Settings) -> None:
    """Register Chainlit's login callback; call after Chainlit is imported and before it is mounted."""
    if not settings.login_required and not settings.chat_history:
        return  # no accounts and nothing stored: no login, as before the history existed
    import chainlit as cl

    # Chainlit signs its login tokens with this; never logged.
    os.environ["CHAINLIT_AUTH_SECRET"], signed_with = auth_secret(settings)

    if not settings.login_required:

        @cl.header_auth_callback
        async def local_user(headers: object) -> cl.User:
            return cl.User(identifier=LOCAL_USER, metadata={"provider": "local"})

        log.info("login_local_user", user=LOCAL_USER, tokens_signed_with=signed_with)
        return

    @cl.password_auth_callback
    async def password_login(username: str, password: str) -> cl.User | None:
        # None: Chainlit answers 401, which its login page shows as "Wrong username or password." (chainlit_root).
        if credentials_match(settings, username, password):
            log.info("login_succeeded", user=username)
            return cl.User(identifier=username, metadata={"provider": "password"})
        log.warning("login_failed")  # neither name nor password: either may be the other one mistyped
        return None

    log.info("login_required", users=sorted(settings.accounts), tokens_signed_with=signed_with)
