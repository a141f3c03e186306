"""Optional password login (CHAT_PASSWORD): one user, Chainlit's login page and its signed token cookie.

Off by default. Only Chainlit's routes (the page's API and Socket.IO) ask for the login: /healthz, /readyz and
/metrics belong to the outer app and stay open for Docker, Prometheus and the blackbox probes.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets

import structlog

from foundry_chat.settings import Settings

log = structlog.get_logger("foundry_chat.auth")


def _digest(value: str) -> bytes:
    # Hashed first, so that the comparison takes the same time whatever the lengths; surrogatepass never raises
    # (the form may carry any text).
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()


def credentials_match(settings: Settings, username: str, password: str) -> bool:
    """Constant-time check of one login attempt against CHAT_USERNAME and CHAT_PASSWORD."""
    if settings.chat_password is None:
        return False
    username_ok = hmac.compare_digest(_digest(username), _digest(settings.chat_username))
    password_ok = hmac.compare_digest(_digest(password), _digest(settings.chat_password.get_secret_value()))
    return username_ok & password_ok  # both compared, whichever is wrong


def install_password_login(settings: Settings) -> None:
    """Make Chainlit require the login; call after Chainlit is imported and before it is mounted."""
    if not settings.login_required:
        return
    import chainlit as cl

    if settings.chainlit_auth_secret is not None:
        os.environ["CHAINLIT_AUTH_SECRET"] = settings.chainlit_auth_secret.get_secret_value()
        signed_with = "CHAINLIT_AUTH_SECRET"
    else:
        # Chainlit signs its login tokens with this. A random one per start means every login ends when the
        # service restarts; set CHAINLIT_AUTH_SECRET to keep logins across restarts. Never logged.
        os.environ["CHAINLIT_AUTH_SECRET"] = secrets.token_urlsafe(48)
        signed_with = "a random key per start (logins end at a restart)"

    @cl.password_auth_callback
    async def password_login(username: str, password: str) -> cl.User | None:
        # None: Chainlit answers 401, which its login page shows as "Wrong username or password." (chainlit_root).
        if credentials_match(settings, username, password):
            log.info("login_succeeded")
            return cl.User(identifier=settings.chat_username, metadata={"provider": "password"})
        log.warning("login_failed")  # neither name nor password: either may be the other one mistyped
        return None

    log.info("login_required", username=settings.chat_username, tokens_signed_with=signed_with)
