"""Configuration from environment variables (documented in docs/foundry-local.md, generated from these fields)."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Literal
from urllib.parse import unquote, urlsplit

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from foundry_common.settings import check_url

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    # Gateway (the only thing reachable from outside the container).
    host: str = Field(
        "0.0.0.0", validation_alias="GATEWAY_HOST", description="the address the gateway binds (inside the container)"
    )
    port: int = Field(5273, ge=1, le=65535, validation_alias="PORT", description="the embedded service's gateway port")

    # Model choice: an archive URL wins over a local folder, which wins over a catalog alias.
    foundry_model: str = Field(
        "qwen2.5-0.5b",
        validation_alias="FOUNDRY_MODEL",
        description="catalog alias of the embedded model, downloaded once",
    )
    foundry_model_path: Path | None = Field(
        None,
        validation_alias="FOUNDRY_MODEL_PATH",
        description="a local model folder to serve instead (wins over `FOUNDRY_MODEL`)",
    )
    foundry_model_url: str | None = Field(
        None,
        validation_alias="FOUNDRY_MODEL_URL",
        description=(
            "an http(s) URL of a `.tar` or `.tar.gz` of a model folder: downloaded once into the data volume, then "
            "served like `FOUNDRY_MODEL_PATH` (wins over both)"
        ),
    )
    foundry_model_id: str | None = Field(
        None,
        validation_alias="FOUNDRY_MODEL_ID",
        description=(
            "the id a local or downloaded model folder is registered and served under (`NAME:VERSION`; unset: "
            "`<folder or archive name>-generic-cpu:1`)"
        ),
    )

    foundry_engine: Literal["foundry", "batched"] = Field(
        "foundry",
        validation_alias="FOUNDRY_ENGINE",
        description=(
            "what serves the model: `foundry`, the Foundry Local runtime's own service (one request decodes at a "
            "time); `batched`, a continuous-batching decoder over ONNX Runtime on the same folder (concurrent "
            "requests decode together: more tokens/s in all, answers identical to alone; no tool calls)"
        ),
    )

    data_dir: Path = Field(
        Path("/data"),
        validation_alias="FOUNDRY_DATA_DIR",
        description="runtime state, model cache and runtime logs (a volume in the container)",
    )

    default_max_tokens: int = Field(
        512,
        ge=1,
        validation_alias="DEFAULT_MAX_TOKENS",
        description="`max_tokens` added when a client sends none (capped at half the model's context)",
    )
    max_request_bytes: int = Field(
        1_048_576, ge=1024, validation_alias="MAX_REQUEST_BYTES", description="largest accepted request body"
    )
    upstream_timeout_seconds: float = Field(
        300.0,
        gt=0,
        validation_alias="UPSTREAM_TIMEOUT_SECONDS",
        description="how long the gateway waits on the runtime",
    )

    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", validation_alias="LOG_LEVEL", description="`debug`, `info`, `warning`, `error`"
    )
    log_format: Literal["json", "console"] = Field(
        "json", validation_alias="LOG_FORMAT", description="`json` (one object per line) or `console`"
    )

    @field_validator("foundry_model_path", mode="before")
    @classmethod
    def _empty_path_is_unset(cls, value: object) -> object:
        # Compose passes unset variables as empty strings.
        return None if value == "" else value

    @field_validator("foundry_model_id", "foundry_model_url", mode="before")
    @classmethod
    def _empty_id_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("log_level", "log_format", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("foundry_engine", mode="before")
    @classmethod
    def _engine_lower_empty_is_default(cls, value: object) -> object:
        # `FOUNDRY_ENGINE=` in a .env file: the default, as if unset.
        return (value.lower() or "foundry") if isinstance(value, str) else value

    @field_validator("foundry_model_id")
    @classmethod
    def _id_has_version(cls, value: str | None) -> str | None:
        if value is not None and ":" not in value:
            raise ValueError("must look like NAME:VERSION, e.g. my-model-generic-cpu:1")
        return value

    @field_validator("foundry_model_url")
    @classmethod
    def _url_is_http(cls, value: str | None) -> str | None:
        return None if value is None else check_url(value, "http://models.internal/smollm2-135m-instruct.tar.gz")

    @property
    def local_model_id(self) -> str:
        """Stable id for the local model folder: the same folder name always registers the same id."""
        assert self.foundry_model_path is not None
        return self.model_id_for(self.foundry_model_path.name)

    @property
    def archive_name(self) -> str:
        """The model's name from FOUNDRY_MODEL_URL's file name, without .tar/.tar.gz/.tgz (`model` when it has none)."""
        assert self.foundry_model_url is not None
        name = PurePosixPath(unquote(urlsplit(self.foundry_model_url).path)).name
        for suffix in ARCHIVE_SUFFIXES:
            if name.lower().endswith(suffix):
                return name[: -len(suffix)] or "model"
        return name or "model"

    def model_id_for(self, name: str) -> str:
        """FOUNDRY_MODEL_ID, else `<name>-generic-cpu:1` from a folder (or archive) name: the same name, the same id."""
        if self.foundry_model_id:
            return self.foundry_model_id
        name = "".join(c if c.isalnum() or c in "-." else "-" for c in name.lower())
        return f"{name.strip('-') or 'local-model'}-generic-cpu:1"
