"""Configuration: defaults, the router it talks to, and bad values that stop the service at start."""

from __future__ import annotations

import pytest

from foundry_chat.settings import Settings, load_settings

pytestmark = pytest.mark.unit

VARIABLES = [
    *("ROUTER_URL", "ROUTER_API_KEY", "ROUTER_POLL_SECONDS", "MODEL", "PROFILE_ROUTES", "CHAT_PORT", "TEMPERATURE"),
    *("LOG_LEVEL", "MAX_INPUT_CHARS", "CHAT_USERNAME", "CHAT_PASSWORD", "CHAINLIT_AUTH_SECRET"),
    *("FOUNDRY_LOCAL_URLS", "FOUNDRY_LOCAL_API_KEYS", "CLOUD_BASE_URL", "CLOUD_MODEL", "BASE_URL", "API_KEY"),
]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)


def test_the_default_upstream_is_the_router_service() -> None:
    settings = Settings()
    assert settings.router_url == "http://router:4000/v1"
    assert settings.router_api_key.get_secret_value() == "not-needed"
    assert settings.router_poll_seconds == 2
    assert settings.profile_routes == {"general": "auto", "code": "local"}


def test_router_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROUTER_URL", "http://127.0.0.1:4000/v1/")
    monkeypatch.setenv("ROUTER_API_KEY", "router-key")
    monkeypatch.setenv("ROUTER_POLL_SECONDS", "0.5")
    monkeypatch.setenv("MODEL", "phi-4-mini")
    settings = Settings()
    assert settings.router_url == "http://127.0.0.1:4000/v1"
    assert settings.router_api_key.get_secret_value() == "router-key"
    assert "router-key" not in repr(settings)
    assert settings.router_poll_seconds == 0.5
    assert settings.model == "phi-4-mini"


def test_empty_values_from_compose_mean_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ROUTER_URL", "ROUTER_API_KEY", "MODEL"):
        monkeypatch.setenv(name, "")
    settings = Settings()
    assert settings.router_url == "http://router:4000/v1"
    assert settings.router_api_key.get_secret_value() == "not-needed"
    assert settings.model is None


def test_the_routers_own_variables_are_not_the_chats(monkeypatch: pytest.MonkeyPatch) -> None:
    # One .env serves the whole stack: the chat ignores upstream and cloud settings, even invalid ones.
    monkeypatch.setenv("FOUNDRY_LOCAL_URLS", "foundry-local:5273")
    monkeypatch.setenv("CLOUD_BASE_URL", "https://api.cloud.test/v1")
    settings = Settings()
    assert not hasattr(settings, "foundry_local_urls") and not hasattr(settings, "cloud_base_url")


def test_profile_routes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROFILE_ROUTES", "general=cloud")
    assert Settings().profile_routes == {"general": "cloud", "code": "local"}


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("ROUTER_URL", "router:4000", "ROUTER_URL='router:4000'"),
        ("ROUTER_URL", "ftp://router/v1", "not an http(s) URL"),
        ("ROUTER_URL", "http://router:port/v1", "invalid port"),
        ("ROUTER_POLL_SECONDS", "0", "ROUTER_POLL_SECONDS='0'"),
        ("PROFILE_ROUTES", "code=somewhere", "PROFILE_ROUTES"),
        ("PROFILE_ROUTES", "poetry=local", "unknown profile poetry"),
        ("TEMPERATURE", "hot", "TEMPERATURE='hot'"),
        ("LOG_LEVEL", "loud", "LOG_LEVEL='loud'"),
        ("CHAT_PORT", "70000", "CHAT_PORT='70000'"),
        ("CHAT_PASSWORD", "short", "CHAT_PASSWORD=(hidden): must be at least 8 characters"),
        ("CHAINLIT_AUTH_SECRET", "too-short", "CHAINLIT_AUTH_SECRET=(hidden): must be at least 32 characters"),
    ],
)
def test_bad_value_names_the_variable_and_exits_non_zero(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], variable: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SystemExit) as exit_info:
        load_settings()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("Invalid configuration:")
    assert expected in err
    assert "Traceback" not in err


def test_login_is_off_by_default() -> None:
    settings = Settings()
    assert not settings.login_required
    assert settings.chat_username == "admin" and settings.chainlit_auth_secret is None


def test_empty_login_variables_mean_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    # Compose passes unset variables as empty strings.
    for name in ("CHAT_USERNAME", "CHAT_PASSWORD", "CHAINLIT_AUTH_SECRET"):
        monkeypatch.setenv(name, "")
    settings = Settings()
    assert not settings.login_required and settings.chat_username == "admin"
    assert settings.chainlit_auth_secret is None


def test_a_password_turns_the_login_on_and_stays_out_of_reprs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHAT_PASSWORD", "long enough")
    monkeypatch.setenv("CHAT_USERNAME", "alice")
    settings = Settings()
    assert settings.login_required and settings.chat_username == "alice"
    assert "long enough" not in repr(settings) and "long enough" not in str(settings.model_dump())


def test_secrets_are_never_echoed_in_configuration_errors(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CHAT_PASSWORD", "hunter2")
    monkeypatch.setenv("CHAINLIT_AUTH_SECRET", "tiny-secret")
    with pytest.raises(SystemExit):
        load_settings()
    err = capsys.readouterr().err
    assert "CHAT_PASSWORD" in err and "CHAINLIT_AUTH_SECRET" in err
    assert "hunter2" not in err and "tiny-secret" not in err
