"""Configuration from environment variables (documented in docs/chat-app.md, generated from these fields).

The chat has one upstream: the router (ROUTER_URL). Upstream discovery, failover and the cloud rules are the
router's settings (docs/router.md), not these.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from foundry_chat.profiles import DEFAULT_ROUTES, PROFILES, Route
from foundry_common.drain import DrainSettings
from foundry_common.settings import check_url, split_list
from foundry_common.settings import load_settings as common_load_settings

DEFAULT_ROUTER_URL = "http://router:4000/v1"
MIN_PASSWORD_CHARS = 8
# HS256 keys shorter than the hash (32 bytes) are weak; PyJWT warns about them too.
MIN_AUTH_SECRET_CHARS = 32
# The temperatures a user may pick (the settings panel's slider and its checks) and TEMPERATURE may be.
TEMPERATURE_MIN, TEMPERATURE_MAX = 0, 2
# Shown as hidden in configuration errors: never echo a secret to the terminal or a log.
SECRET_VARIABLES = {"CHAT_PASSWORD", "CHAT_USERS", "CHAINLIT_AUTH_SECRET", "ROUTER_API_KEY", "DATABASE_URL"}


class Settings(DrainSettings):
    """Also SHUTDOWN_NOTICE_SECONDS and SHUTDOWN_GRACE_SECONDS (foundry_common/drain.py): a stop lets answers finish."""

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    host: str = Field("0.0.0.0", validation_alias="CHAT_HOST", description="the address the chat service binds")
    port: int = Field(8080, ge=1, le=65535, validation_alias="CHAT_PORT", description="the chat service's port")

    # The one upstream: the router's OpenAI base URL, the key it asks for (any text when it asks for none), and how
    # often its /readyz is read for the model list, the upstreams' states and the download banner.
    router_url: str = Field(
        DEFAULT_ROUTER_URL, validation_alias="ROUTER_URL", description="the one upstream: the router's OpenAI base URL"
    )
    router_api_key: SecretStr = Field(
        SecretStr("not-needed"),
        validation_alias="ROUTER_API_KEY",
        description="the key the router asks for (any text when it asks for none); Compose gives the router the same",
    )
    router_poll_seconds: float = Field(
        2.0,
        gt=0,
        le=300,
        validation_alias="ROUTER_POLL_SECONDS",
        description="how often the router's `/readyz` is read (models, upstreams' states, the download banner)",
    )
    # The model offered first (the course's variable), when the router serves it.
    model: str | None = Field(
        None,
        validation_alias="MODEL",
        description="the model the chat picks first when it is loaded (otherwise the first loaded one)",
    )
    # Each chat profile's route, sent to the router as X-Foundry-Route: local, cloud or auto.
    profile_routes: Annotated[dict[str, Route], NoDecode] = Field(
        default_factory=lambda: dict(DEFAULT_ROUTES),
        validation_alias="PROFILE_ROUTES",
        description="route per chat profile: `local`, `cloud` or `auto` (local first, cloud fallback)",
    )

    # Chat defaults (each user can change them in the chat settings).
    system_prompt: str = Field(
        "You are a helpful assistant. Answer concisely.",
        validation_alias="SYSTEM_PROMPT",
        description="the default system prompt (users can change it in the chat settings)",
    )
    temperature: float = Field(
        0.7,
        ge=TEMPERATURE_MIN,
        le=TEMPERATURE_MAX,
        validation_alias="TEMPERATURE",
        description="the default temperature",
    )
    max_tokens: int = Field(
        512, ge=1, le=32768, validation_alias="MAX_TOKENS", description="the default answer length in tokens"
    )
    context_tokens: int = Field(
        4096, ge=256, validation_alias="CONTEXT_TOKENS", description="the context budget: history + question + answer"
    )
    max_input_chars: int = Field(
        8000, ge=1, validation_alias="MAX_INPUT_CHARS", description="the longest message accepted"
    )
    # Streamed tokens are sent to the browser at most once per interval per session (the first at once).
    stream_interval_ms: float = Field(
        30.0,
        ge=0,
        le=1000,
        validation_alias="STREAM_INTERVAL_MS",
        description="streamed tokens go to the browser at most once per interval (the first at once)",
    )
    # The longest wait for the router's next bytes: its first token (queueing included), or the next one.
    request_timeout_seconds: float = Field(
        300.0,
        gt=0,
        validation_alias="REQUEST_TIMEOUT_SECONDS",
        description="the longest the chat waits for the router's next bytes (the first token, and between tokens)",
    )

    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", validation_alias="LOG_LEVEL", description="`debug`, `info`, `warning`, `error`"
    )
    log_format: Literal["json", "console"] = Field(
        "json", validation_alias="LOG_FORMAT", description="`json` (one object per line) or `console`"
    )
    log_prompts: bool = Field(
        False, validation_alias="LOG_PROMPTS", description="log the prompts sent upstream (off: prompts are private)"
    )

    # Optional login (off unless CHAT_PASSWORD is set): one user, CHAT_USERNAME with CHAT_PASSWORD.
    chat_username: str = Field(
        "admin", validation_alias="CHAT_USERNAME", description="the login name that goes with `CHAT_PASSWORD`"
    )
    chat_password: SecretStr | None = Field(
        None,
        validation_alias="CHAT_PASSWORD",
        description="the chat's password (8+ characters); when set, the chat asks for a login (unset: no login)",
    )
    chat_users: SecretStr | None = Field(
        None,
        validation_alias="CHAT_USERS",
        description=(
            "more accounts, as `name:password` pairs separated by commas (8+ character passwords); each has "
            "threads of their own"
        ),
    )
    # Signs Chainlit's login tokens (JWT). Unset: a random secret per start, so every login ends at a restart.
    chainlit_auth_secret: SecretStr | None = Field(
        None,
        validation_alias="CHAINLIT_AUTH_SECRET",
        description=(
            "signs the chat's login tokens (32+ characters; unset: a key generated once into CHAT_DATA_DIR, "
            "or a random key at each start when the history is off); the same on every replica"
        ),
    )

    # The chat history (docs/chat-app.md, "History"): Chainlit's data layer over SQLite or PostgreSQL.
    chat_history: bool = Field(
        True,
        validation_alias="CHAT_HISTORY",
        description="keep conversations in a database: the thread list, resume, feedback (off: nothing is stored)",
    )
    database_url: str | None = Field(
        None,
        validation_alias="DATABASE_URL",
        description=(
            "the history's database: `postgresql://user:password@host:5432/db`, or unset for SQLite in `CHAT_DATA_DIR`"
        ),
    )
    chat_data_dir: str = Field(
        "data",
        validation_alias="CHAT_DATA_DIR",
        description=(
            "where the SQLite history (`chat.db`) and the generated token key live (relative to the working "
            "directory: `/app/data` in the image, a named volume)"
        ),
    )
    database_wait_seconds: float = Field(
        60.0,
        ge=0,
        validation_alias="DATABASE_WAIT_SECONDS",
        description=(
            "how long the chat waits at start for a history database it cannot reach (PostgreSQL starting "
            "beside it) before it runs without history"
        ),
    )
    checkpoint_seconds: float = Field(
        1.0,
        gt=0,
        le=60,
        validation_alias="CHECKPOINT_SECONDS",
        description="how often a streaming answer is saved (what a crash loses at most)",
    )

    # Login hardening (docs/chat-app.md, "Login").
    login_max_failures: int = Field(
        5,
        ge=1,
        validation_alias="LOGIN_MAX_FAILURES",
        description="failed logins from one client within `LOGIN_WINDOW_SECONDS` before it gets 429",
    )
    login_window_seconds: float = Field(
        300.0,
        gt=0,
        validation_alias="LOGIN_WINDOW_SECONDS",
        description="the window in which failed logins are counted, and how long a client then waits",
    )
    chat_allowed_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        validation_alias="CHAT_ALLOWED_ORIGINS",
        description=(
            "other web origins that may call the chat's API with a visitor's login (comma-separated; "
            "unset: the chat's own pages only)"
        ),
    )

    @field_validator("model", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("database_url", mode="before")
    @classmethod
    def _empty_database_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("chat_allowed_origins", mode="before")
    @classmethod
    def _origins(cls, value: object) -> object:
        return split_list(value) if isinstance(value, str) else value

    @field_validator("chat_password", "chainlit_auth_secret", "chat_users", mode="before")
    @classmethod
    def _empty_secret_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("router_url", mode="before")
    @classmethod
    def _empty_url_is_default(cls, value: object) -> object:
        return DEFAULT_ROUTER_URL if value == "" else value

    @field_validator("router_url")
    @classmethod
    def _check_router_url(cls, value: str) -> str:
        return check_url(value, example=DEFAULT_ROUTER_URL)

    @field_validator("router_api_key", mode="before")
    @classmethod
    def _empty_key_is_placeholder(cls, value: object) -> object:
        # A router without keys ignores it, but the OpenAI client refuses an empty one.
        return "not-needed" if value == "" else value

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

    @field_validator("chat_users")
    @classmethod
    def _users(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            parse_accounts(value.get_secret_value())  # raises with the problem, never the passwords
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

    @field_validator("profile_routes", mode="before")
    @classmethod
    def _routes(cls, value: object) -> object:
        # "general=auto,code=local": profile=route pairs over the defaults.
        if not isinstance(value, str):
            return value
        routes: dict[str, str] = dict(DEFAULT_ROUTES)
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

    @property
    def accounts(self) -> dict[str, str]:
        """Every login: CHAT_USERNAME with CHAT_PASSWORD, and CHAT_USERS."""
        accounts = parse_accounts(self.chat_users.get_secret_value()) if self.chat_users else {}
        if self.chat_password is not None:
            accounts[self.chat_username] = self.chat_password.get_secret_value()
        return accounts

    @property
    def login_required(self) -> bool:
        return self.chat_password is not None or self.chat_users is not None


def parse_accounts(text: str) -> dict[str, str]:
    """`alice:secret-1,bob:secret-2` as {name: password}; the errors name the account, never a password."""
    accounts: dict[str, str] = {}
    for number, pair in enumerate(split_list(text), start=1):  # type: ignore[arg-type]
        name, sep, password = pair.partition(":")
        name = name.strip()
        if not sep or not name:
            raise ValueError(f"account {number} is not NAME:PASSWORD")
        if len(password) < MIN_PASSWORD_CHARS:
            raise ValueError(f"the password of {name!r} must be at least {MIN_PASSWORD_CHARS} characters")
        if name in accounts:
            raise ValueError(f"{name!r} is listed twice")
        accounts[name] = password
    return accounts


def load_settings() -> Settings:
    """Read settings; on bad values print which variable is wrong (secrets hidden) and exit 2."""
    return common_load_settings(Settings, SECRET_VARIABLES)
