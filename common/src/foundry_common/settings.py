"""Settings from environment variables: shared validators, and errors said as the variable to fix (secrets hidden)."""

from __future__ import annotations

import sys
from collections.abc import Collection
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from pydantic import ValidationError
from pydantic_settings import BaseSettings

S = TypeVar("S", bound=BaseSettings)

# Docker secrets (Swarm's `secrets:`) are files here, named after the variable: /run/secrets/DATABASE_URL is
# read like DATABASE_URL, so a password never has to be in a service's environment. The environment wins.
SECRETS_DIR = Path("/run/secrets")


def split_list(value: object) -> object:
    """Comma-separated lists (a `mode="before"` validator); Compose passes unset variables as empty strings."""
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


def check_url(value: str, example: str = "http://host:port/v1") -> str:
    """An http(s) URL with a host and a numeric port if any, without its trailing slash."""
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError(f"{value!r} is not an http(s) URL like {example}")
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise ValueError(f"{value!r} has an invalid port") from None
    return value.rstrip("/")


def format_errors(exc: ValidationError, secret_variables: Collection[str] = ()) -> str:
    """One line per error, naming the variable; the values of `secret_variables` (upper case) show as (hidden)."""
    lines = ["Invalid configuration:"]
    for error in exc.errors():
        message = error["msg"].removeprefix("Value error, ")
        if error["loc"]:
            # e.g. PROFILE_ROUTES[code]='somewhere' for a value inside a list or mapping variable
            name = str(error["loc"][0]).upper()
            variable = name + "".join(f"[{part}]" for part in error["loc"][1:])
            shown = "(hidden)" if name in secret_variables else repr(error.get("input"))
            lines.append(f"  {variable}={shown}: {message}")
        else:  # a rule across several variables
            lines.append(f"  {message}")
    return "\n".join(lines)


def load_settings(cls: type[S], secret_variables: Collection[str] = (), secrets_dir: Path = SECRETS_DIR) -> S:
    """Read `cls` from the environment, then from files named after the variables in `secrets_dir` (when it
    exists); on bad values print which variable is wrong and exit 2."""
    try:
        return cls(_secrets_dir=secrets_dir if secrets_dir.is_dir() else None)
    except ValidationError as exc:
        print(format_errors(exc, secret_variables), file=sys.stderr)
        raise SystemExit(2) from None
