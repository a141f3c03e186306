"""The shared library's own pieces: settings errors, logging set-up and the container healthcheck."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from foundry_common import healthcheck
from foundry_common.logs import configure_logging
from foundry_common.settings import check_url, format_errors, load_settings, split_list


class Example(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    port: int = Field(8000, ge=1, le=65535, validation_alias="EXAMPLE_PORT")
    token: SecretStr | None = Field(None, validation_alias="EXAMPLE_TOKEN")
    names: list[str] = Field(default_factory=list, validation_alias="EXAMPLE_NAMES")
    low: int = Field(0, validation_alias="EXAMPLE_LOW")
    high: int = Field(1, validation_alias="EXAMPLE_HIGH")

    @field_validator("token")
    @classmethod
    def _long_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 8:
            raise ValueError("must be at least 8 characters")
        return value

    @model_validator(mode="after")
    def _ordered(self) -> Example:
        if self.low > self.high:
            raise ValueError("EXAMPLE_LOW must not exceed EXAMPLE_HIGH")
        return self


@pytest.mark.unit
@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("EXAMPLE_PORT", "eighty", "  EXAMPLE_PORT='eighty': Input should be a valid integer"),
        ("EXAMPLE_TOKEN", "short", "  EXAMPLE_TOKEN=(hidden): must be at least 8 characters"),
        ("EXAMPLE_NAMES", '["a", 2]', "  EXAMPLE_NAMES[1]=2: Input should be a valid string"),
        ("EXAMPLE_LOW", "5", "  EXAMPLE_LOW must not exceed EXAMPLE_HIGH"),
    ],
)
def test_each_error_names_its_variable_and_hides_secrets(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], variable: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SystemExit) as exit_info:
        load_settings(Example, secret_variables={"EXAMPLE_TOKEN"})
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    heading, line = err.splitlines()
    assert heading == "Invalid configuration:" and line.startswith(expected)
    assert "short" not in err


@pytest.mark.unit
def test_without_secret_variables_every_value_is_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXAMPLE_TOKEN", "short")
    with pytest.raises(ValidationError) as error:
        Example()
    assert "EXAMPLE_TOKEN='short'" in format_errors(error.value)


@pytest.mark.unit
def test_good_settings_are_returned(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXAMPLE_PORT", "9000")
    assert load_settings(Example).port == 9000


@pytest.mark.unit
def test_a_docker_secret_file_is_read_like_its_variable_and_the_environment_wins(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "EXAMPLE_TOKEN").write_text("from-the-secret-file\n")
    assert load_settings(Example, secrets_dir=tmp_path).token.get_secret_value() == "from-the-secret-file"
    monkeypatch.setenv("EXAMPLE_TOKEN", "from-the-environment")
    assert load_settings(Example, secrets_dir=tmp_path).token.get_secret_value() == "from-the-environment"


@pytest.mark.unit
def test_a_missing_secrets_folder_is_no_error(tmp_path: Path) -> None:
    assert load_settings(Example, secrets_dir=tmp_path / "absent").token is None


@pytest.mark.unit
def test_lists_are_comma_separated_and_empty_means_none() -> None:
    assert split_list(" a, b ,,c ") == ["a", "b", "c"]
    assert split_list("") == []
    assert split_list(["kept"]) == ["kept"]


@pytest.mark.unit
def test_urls_are_http_with_a_host_and_lose_their_trailing_slash() -> None:
    assert check_url("http://router:4000/v1/") == "http://router:4000/v1"
    for bad, reason in [("router:4000", "is not an http"), ("http://host:port/v1", "invalid port")]:
        with pytest.raises(ValueError, match=reason):
            check_url(bad)
    with pytest.raises(ValueError, match="like http://router:4000/v1"):
        check_url("ftp://x", example="http://router:4000/v1")


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    for name in ("uvicorn.access", "noisy.library"):
        logging.getLogger(name).setLevel(logging.NOTSET)


@pytest.mark.unit
@pytest.mark.usefixtures("restore_logging")
def test_logging_writes_json_lines_and_quiets_the_named_loggers(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info", "json", quiet=("noisy.library",))
    logging.getLogger("noisy.library").info("chatter")
    logging.getLogger("noisy.library").warning("worth reading")
    logging.getLogger("uvicorn.access").info("GET / 200")
    logging.getLogger("uvicorn.error").info("started")
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(e["logger"], e["level"], e["event"]) for e in events] == [
        ("noisy.library", "warning", "worth reading"),
        ("uvicorn.error", "info", "started"),
    ]
    assert all(e["timestamp"].endswith("Z") for e in events)


@pytest.mark.unit
def test_healthcheck_needs_the_port_variable_and_its_default(capsys: pytest.CaptureFixture[str]) -> None:
    assert healthcheck.main([]) == 1
    assert "usage:" in capsys.readouterr().err


class _Health(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.integration
def test_healthcheck_asks_healthz_on_the_port_the_variable_names(
    health_server: ThreadingHTTPServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    port = health_server.server_address[1]
    monkeypatch.setenv("SOME_PORT", str(port))
    assert healthcheck.main(["SOME_PORT", "1"]) == 0
    monkeypatch.setattr(_Health, "status", 503)
    assert healthcheck.main(["SOME_PORT", "1"]) == 1
    assert "503" in capsys.readouterr().err
    # Unset (or empty, as Compose passes it): the default port.
    monkeypatch.setenv("SOME_PORT", "")
    monkeypatch.setattr(_Health, "status", 200)
    assert healthcheck.main(["SOME_PORT", str(port)]) == 0
