"""Configuration from environment variables: each default is written here and nowhere else (docs/router.md)."""

from __future__ import annotations

import ipaddress
import os
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from foundry_common.drain import DrainSettings
from foundry_common.protocol import Route
from foundry_common.settings import check_url, split_list
from foundry_router.capacity import Targets

# Shown as hidden in configuration errors: never echo a secret to the terminal or a log.
SECRET_VARIABLES = {"API_KEY", "CLOUD_API_KEY", "FOUNDRY_LOCAL_API_KEYS", "ROUTER_API_KEYS"}


def default_upstream_urls() -> list[str]:
    # The host's Foundry Local first (its CLI service, port fixed in its settings), then the embedded service.
    port = os.environ.get("FOUNDRY_LOCAL_PORT") or "51211"
    return [f"http://host.docker.internal:{port}/v1", "http://foundry-local:5273/v1"]


class Settings(DrainSettings):
    """Also SHUTDOWN_NOTICE_SECONDS and SHUTDOWN_GRACE_SECONDS (foundry_common/drain.py): a stop lets answers finish."""

    # Empty is unset: Compose passes ROUTER_API_KEYS empty when no key is set, and the generated key of a stack
    # published beyond loopback (/run/secrets/ROUTER_API_KEYS, foundry_common/network_lock.py) must then apply.
    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore", env_ignore_empty=True)

    host: str = Field(
        "0.0.0.0", validation_alias="ROUTER_HOST", description="address the router listens on (the image sets 0.0.0.0)"
    )
    port: int = Field(
        4000,
        ge=1,
        le=65535,
        validation_alias="ROUTER_PORT",
        description="port the router listens on inside its container (Compose publishes it on `ROUTER_PORT` of `.env`)",
    )
    # Where the router is published (Compose passes BIND_ADDRESS): not loopback without keys is warned about.
    published_address: str = Field(
        "127.0.0.1",
        validation_alias="ROUTER_PUBLISHED_ADDRESS",
        description="where the router is published (Compose passes `BIND_ADDRESS`); beyond loopback without keys, "
        "the log and `/readyz` warn",
    )
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default_factory=list,
        validation_alias="ROUTER_API_KEYS",
        description="comma-separated keys; when set, `/v1/*` needs `Authorization: Bearer <key>`",
    )

    # Upstreams: an ordered list of OpenAI-compatible base URLs, each with an optional key (same position).
    foundry_local_urls: Annotated[list[str], NoDecode] = Field(
        default_factory=default_upstream_urls,
        validation_alias="FOUNDRY_LOCAL_URLS",
        description="the local upstreams in order (OpenAI base URLs); a name with several addresses is one "
        "upstream per address",
    )
    foundry_local_api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        validation_alias="FOUNDRY_LOCAL_API_KEYS",
        description="a key per URL of `FOUNDRY_LOCAL_URLS`, same position (empty: `API_KEY`)",
    )
    # The course's variables: BASE_URL goes first in the list, API_KEY is the default upstream key.
    base_url: str | None = Field(
        None, validation_alias="BASE_URL", description="the course's single upstream: goes first in the list"
    )
    api_key: str = Field(
        "not-needed",
        validation_alias="API_KEY",
        description="the upstreams' key where `FOUNDRY_LOCAL_API_KEYS` gives none",
    )

    # Optional cloud upstream and the rules that send a request to it.
    cloud_base_url: str | None = Field(
        None, validation_alias="CLOUD_BASE_URL", description="an optional cloud OpenAI-compatible upstream"
    )
    cloud_api_key: str | None = Field(None, validation_alias="CLOUD_API_KEY", description="the cloud upstream's key")
    cloud_model: str | None = Field(
        None, validation_alias="CLOUD_MODEL", description="the model the cloud serves (required with `CLOUD_BASE_URL`)"
    )
    cloud_prompt_tokens: int = Field(
        0,
        ge=0,
        validation_alias="CLOUD_PROMPT_TOKENS",
        description="with route `auto`, prompts estimated over this many tokens go to the cloud first (0: never)",
    )
    default_route: Route = Field(
        "auto",
        validation_alias="ROUTER_DEFAULT_ROUTE",
        description="route of requests without an `X-Foundry-Route` header: `local`, `cloud` or `auto`",
    )

    # Load: how many requests an upstream takes at once is learned from what its streams measure (capacity.py);
    # the cap bounds it. The queue holds a team's worth of chats arriving together (tests/e2e/test_load.py).
    admission: Literal["measured", "static"] = Field(
        "measured",
        validation_alias="ADMISSION",
        description="`measured`: each upstream takes as many streams at once as keep every one above "
        "`STREAM_RATE_FLOOR_TOKENS_PER_SECOND` and its first token under `TTFT_BOUND_SECONDS`, learned from the "
        "finished streams, at most `UPSTREAM_MAX_CONCURRENCY`; `static`: always `UPSTREAM_MAX_CONCURRENCY`",
    )
    max_concurrency: int = Field(
        16,
        ge=1,
        le=1024,
        validation_alias="UPSTREAM_MAX_CONCURRENCY",
        description="requests each upstream takes at once: with `ADMISSION=measured` only the upper bound of the "
        "learned limit",
    )
    stream_rate_floor: float = Field(
        8.0,
        gt=0,
        le=10000,
        validation_alias="STREAM_RATE_FLOOR_TOKENS_PER_SECOND",
        description="the decode rate (tokens/s) every stream keeps under measured admission: 8 is a fast reader's "
        "pace (240 to 350 words a minute at some 1.3 tokens a word is 5 to 8 tokens/s), so text appears at least "
        "as fast as it is read",
    )
    ttft_bound: float = Field(
        2.0,
        gt=0,
        le=600,
        validation_alias="TTFT_BOUND_SECONDS",
        description="under measured admission, the longest time to first token (from the upstream taking the "
        "request) that a stream may see; past it the upstream takes fewer at once",
    )
    queue_size: int = Field(
        64,
        ge=0,
        le=100000,
        validation_alias="UPSTREAM_QUEUE_SIZE",
        description="requests that may wait for each upstream; beyond, a 429 with `Retry-After`",
    )
    queue_timeout_seconds: float = Field(
        60.0, gt=0, validation_alias="QUEUE_TIMEOUT_SECONDS", description="longest wait in a queue before a 429"
    )

    # max_tokens for clients that send none: at most this, and never more than the room left in the context.
    default_max_tokens: int = Field(
        512,
        ge=1,
        le=1_000_000,
        validation_alias="DEFAULT_MAX_TOKENS",
        description="`max_tokens` for requests that send none, at most the room left in the model's context",
    )
    context_tokens: int = Field(
        4096,
        ge=256,
        validation_alias="CONTEXT_TOKENS",
        description="context length assumed for a model whose upstream does not say it",
    )
    max_request_bytes: int = Field(
        1_048_576, ge=1024, validation_alias="MAX_REQUEST_BYTES", description="largest request body (413 beyond)"
    )

    # Discovery and upstream requests.
    probe_interval_seconds: float = Field(
        10.0,
        gt=0,
        validation_alias="PROBE_INTERVAL_SECONDS",
        description="how often a healthy upstream is probed (and names re-resolved)",
    )
    probe_max_backoff_seconds: float = Field(
        5.0,
        gt=0,
        validation_alias="PROBE_MAX_BACKOFF_SECONDS",
        description="longest wait between probes of a failed upstream (from 0.5 s, doubling)",
    )
    probe_timeout_seconds: float = Field(
        3.0, gt=0, validation_alias="PROBE_TIMEOUT_SECONDS", description="timeout of one probe request"
    )
    request_timeout_seconds: float = Field(
        300.0,
        gt=0,
        validation_alias="REQUEST_TIMEOUT_SECONDS",
        description="longest silence of an upstream, before its first token or between two",
    )

    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", validation_alias="LOG_LEVEL", description="`debug`, `info`, `warning` or `error`"
    )
    log_format: Literal["json", "console"] = Field(
        "json", validation_alias="LOG_FORMAT", description="`json` (one object per line) or `console`"
    )
    log_prompts: bool = Field(
        False, validation_alias="LOG_PROMPTS", description="log each request's messages (private: off by default)"
    )

    @field_validator("base_url", "cloud_base_url", "cloud_api_key", "cloud_model", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("api_key", mode="before")
    @classmethod
    def _empty_key_is_placeholder(cls, value: object) -> object:
        # Local servers ignore the key, but OpenAI clients refuse an empty one.
        return "not-needed" if value == "" else value

    @field_validator("foundry_local_urls", mode="before")
    @classmethod
    def _urls(cls, value: object) -> object:
        return split_list(value) or default_upstream_urls()

    @field_validator("foundry_local_api_keys", "api_keys", mode="before")
    @classmethod
    def _lists(cls, value: object) -> object:
        return split_list(value)

    @field_validator("foundry_local_urls")
    @classmethod
    def _check_urls(cls, value: list[str]) -> list[str]:
        return [check_url(url) for url in value]

    @field_validator("base_url", "cloud_base_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        return None if value is None else check_url(value)

    @field_validator("log_level", "log_format", "default_route", "admission", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.cloud_base_url and not self.cloud_model:
            raise ValueError("CLOUD_MODEL is required when CLOUD_BASE_URL is set")
        if len(self.foundry_local_api_keys) > len(self.foundry_local_urls):
            raise ValueError("FOUNDRY_LOCAL_API_KEYS has more keys than FOUNDRY_LOCAL_URLS has URLs")
        return self

    @property
    def upstream_urls(self) -> list[str]:
        """BASE_URL (the course's single upstream) first, then the discovery list, without duplicates."""
        urls = [self.base_url] if self.base_url else []
        return urls + [url for url in self.foundry_local_urls if url not in urls]

    @property
    def targets(self) -> Targets:
        """What admission keeps each stream within (capacity.py)."""
        return Targets(self.admission == "measured", self.stream_rate_floor, self.ttft_bound)

    def key_for(self, url: str) -> str:
        if url in self.foundry_local_urls:
            index = self.foundry_local_urls.index(url)
            if index < len(self.foundry_local_api_keys) and self.foundry_local_api_keys[index]:
                return self.foundry_local_api_keys[index]
        return self.api_key

    @property
    def exposed_without_keys(self) -> bool:
        """Published beyond this machine with no API key: anyone on the network can use the models."""
        if self.api_keys:
            return False
        try:
            return not ipaddress.ip_address(self.published_address).is_loopback
        except ValueError:
            return self.published_address not in {"localhost"}
