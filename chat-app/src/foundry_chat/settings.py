"""Configuration from environment variables (documented in the README's configuration table)."""

from __future__ import annotations

import os
import sys
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

Route = Literal["local", "cloud", "auto"]
PROFILES = ("general", "code")
MIN_PASSWORD_CHARS = 8
# HS256 keys shorter than the hash (32 bytes) are weak; PyJWT warns about them too.
MIN_AUTH_SECRET_CHARS = 32
# Shown as hidden in configuration errors: never echo a secret to the terminal or a log.
SECRET_VARIABLES = {"CHAT_PASSWORD", "CHAINLIT_AUTH_SECRET", "API_KEY", "CLOUD_API_KEY", "FOUNDRY_LOCAL_API_KEYS"}


def default_upstream_urls() -> list[str]:
    # The host's Foundry Local first (its CLI service, port fixed in its settings), then the embedded service.
    port = os.environ.get("FOUNDRY_LOCAL_PORT") or "51211"
    return [f"http://host.docker.internal:{port}/v1", "http://foundry-local:5273/v1"]


def split_list(value: object) -> object:
    """Comma-separated lists; Compose passes unset variables as empty strings."""
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


def check_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError(f"{value!r} is not an http(s) URL like http://host:port/v1")
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number
    except ValueError:
        raise ValueError(f"{value!r} has an invalid port") from None
    return value.rstrip("/")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    host: str = Field("0.0.0.0", validation_alias="CHAT_HOST")
    port: int = Field(8080, ge=1, le=65535, validation_alias="CHAT_PORT")

    # Upstreams: an ordered list of OpenAI-compatible base URLs, each with an optional key (same position).
    foundry_local_urls: Annotated[list[str], NoDecode] = Field(
        default_factory=default_upstream_urls, validation_alias="FOUNDRY_LOCAL_URLS"
    )
    foundry_local_api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list, validation_alias="FOUNDRY_LOCAL_API_KEYS"
    )
    # The course's variables: BASE_URL goes first in the list, API_KEY is the default key, MODEL the default model.
    base_url: str | None = Field(None, validation_alias="BASE_URL")
    api_key: str = Field("not-needed", validation_alias="API_KEY")
    model: str | None = Field(None, validation_alias="MODEL")

    # Optional cloud upstream and the rules that send a request to it.
    cloud_base_url: str | None = Field(None, validation_alias="CLOUD_BASE_URL")
    cloud_api_key: str | None = Field(None, validation_alias="CLOUD_API_KEY")
    cloud_model: str | None = Field(None, validation_alias="CLOUD_MODEL")
    cloud_prompt_tokens: int = Field(0, ge=0, validation_alias="CLOUD_PROMPT_TOKENS")
    profile_routes: Annotated[dict[str, Route], NoDecode] = Field(
        default_factory=lambda: {"general": "auto", "code": "local"}, validation_alias="PROFILE_ROUTES"
    )

    # Chat defaults (each user can change them in the chat settings).
    system_prompt: str = Field("You are a helpful assistant. Answer concisely.", validation_alias="SYSTEM_PROMPT")
    temperature: float = Field(0.7, ge=0, le=2, validation_alias="TEMPERATURE")
    max_tokens: int = Field(512, ge=1, le=32768, validation_alias="MAX_TOKENS")
    context_tokens: int = Field(4096, ge=256, validation_alias="CONTEXT_TOKENS")
    max_input_chars: int = Field(8000, ge=1, validation_alias="MAX_INPUT_CHARS")
    # Streamed tokens are sent to the browser at most once per interval per session (the first at once).
    stream_interval_ms: float = Field(30.0, ge=0, le=1000, validation_alias="STREAM_INTERVAL_MS")

    # Discovery and upstream requests.
    probe_interval_seconds: float = Field(10.0, gt=0, validation_alias="PROBE_INTERVAL_SECONDS")
    probe_max_backoff_seconds: float = Field(5.0, gt=0, validation_alias="PROBE_MAX_BACKOFF_SECONDS")
    probe_timeout_seconds: float = Field(3.0, gt=0, validation_alias="PROBE_TIMEOUT_SECONDS")
    request_timeout_seconds: float = Field(300.0, gt=0, validation_alias="REQUEST_TIMEOUT_SECONDS")

    log_level: Literal["debug", "info", "warning", "error"] = Field("info", validation_alias="LOG_LEVEL")
    log_format: Literal["json", "console"] = Field("json", validation_alias="LOG_FORMAT")
    log_prompts: bool = Field(False, validation_alias="LOG_PROMPTS")

    # Optional login (off unless CHAT_PASSWORD is set): one user, CHAT_USERNAME with CHAT_PASSWORD.
    chat_username: str = Field("admin", validation_alias="CHAT_USERNAME")
    chat_password: SecretStr | None = Field(None, validation_alias="CHAT_PASSWORD")
    # Signs Chainlit's login tokens (JWT). Unset: a random secret per start, so every login ends at a restart.
    chainlit_auth_secret: SecretStr | None = Field(None, validation_alias="CHAINLIT_AUTH_SECRET")

    @field_validator("base_url", "model", "cloud_base_url", "cloud_api_key", "cloud_model", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("chat_password", "chainlit_auth_secret", mode="before")
    @classmethod
    def _empty_secret_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("chat_username", mode="before")
    @classmethod
    def _empty_username_is_default(cls, value: object) -> object:
        return "admin" if isinstance(value, str) and not value.strip() else value

    @field_validator("chat_password")
    @classmethod
    def _password_length(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_PASSWORD_CHARS:
            raise ValueError(f"must be at least {MIN_PASSWORD_CHARS} characters (leave it empty for no login)")
        return value

    @field_validator("chainlit_auth_secret")
    @classmethod
    def _secret_length(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_AUTH_SECRET_CHARS:
            raise ValueError(
                f"must be at least {MIN_AUTH_SECRET_CHARS} characters (e.g. from `openssl rand -hex 32`), "
                "or unset for a random one per start"
            )
        return value

    @field_validator("api_key", mode="before")
    @classmethod
    def _empty_key_is_placeholder(cls, value: object) -> object:
        # Local servers ignore the key, but the OpenAI client refuses an empty one.
        return "not-needed" if value == "" else value

    @field_validator("foundry_local_urls", mode="before")
    @classmethod
    def _urls(cls, value: object) -> object:
        value = split_list(value)
        return value or default_upstream_urls()

    @field_validator("foundry_local_api_keys", mode="before")
    @classmethod
    def _keys(cls, value: object) -> object:
        return split_list(value)

    @field_validator("foundry_local_urls")
    @classmethod
    def _check_urls(cls, value: list[str]) -> list[str]:
        return [check_url(url) for url in value]

    @field_validator("base_url", "cloud_base_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        return None if value is None else check_url(value)

    @field_validator("profile_routes", mode="before")
    @classmethod
    def _routes(cls, value: object) -> object:
        # "general=auto,code=local": profile=route pairs over the defaults.
        if not isinstance(value, str):
            return value
        routes: dict[str, str] = {"general": "auto", "code": "local"}
        for pair in split_list(value):  # type: ignore[union-attr]
            name, sep, route = pair.partition("=")
            if not sep:
                raise ValueError(f"{pair!r} is not PROFILE=ROUTE (e.g. code=local)")
            routes[name.strip().lower()] = route.strip().lower()
        return routes

    @field_validator("profile_routes")
    @classmethod
    def _known_profiles(cls, value: dict[str, Route]) -> dict[str, Route]:
        unknown = sorted(set(value) - set(PROFILES))
        if unknown:
            raise ValueError(f"unknown profile {', '.join(unknown)} (known: {', '.join(PROFILES)})")
        return value

    @field_validator("log_level", "log_format", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _cloud_is_complete(self) -> Settings:
        if self.cloud_base_url and not self.cloud_model:
            raise ValueError("CLOUD_MODEL is required when CLOUD_BASE_URL is set")
        if len(self.foundry_local_api_keys) > len(self.foundry_local_urls):
            raise ValueError("FOUNDRY_LOCAL_API_KEYS has more keys than FOUNDRY_LOCAL_URLS has URLs")
        return self

    @property
    def login_required(self) -> bool:
        return self.chat_password is not None

    @property
    def upstream_urls(self) -> list[str]:
        """BASE_URL (the course's single upstream) first, then the discovery list, without duplicates."""
        urls = [self.base_url] if self.base_url else []
        return urls + [url for url in self.foundry_local_urls if url not in urls]

    def key_for(self, url: str) -> str:
        if url in self.foundry_local_urls:
            index = self.foundry_local_urls.index(url)
            if index < len(self.foundry_local_api_keys) and self.foundry_local_api_keys[index]:
                return self.foundry_local_api_keys[index]
        return self.api_key


def format_errors(exc: ValidationError) -> str:
    lines = ["Invalid configuration:"]
    for error in exc.errors():
        message = error["msg"].removeprefix("Value error, ")
        if error["loc"]:
            # e.g. PROFILE_ROUTES[code]='somewhere' for a value inside a list or mapping variable
            name = str(error["loc"][0]).upper()
            variable = name + "".join(f"[{part}]" for part in error["loc"][1:])
            shown = "(hidden)" if name in SECRET_VARIABLES else repr(error.get("input"))
            lines.append(f"  {variable}={shown}: {message}")
        else:  # a rule across several variables
            lines.append(f"  {message}")
    return "\n".join(lines)


def load_settings() -> Settings:
    """Read settings; on bad values print which variable is wrong and exit non-zero."""
    try:
        return Settings()
    except ValidationError as exc:
        print(format_errors(exc), file=sys.stderr)
        raise SystemExit(2) from None
