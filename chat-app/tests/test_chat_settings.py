"""Configuration: defaults, the course's variables, and bad values that stop the service at start."""

from __future__ import annotations

import pytest

from foundry_chat.service import upstreams_from
from foundry_chat.settings import Settings, load_settings

pytestmark = pytest.mark.unit

VARIABLES = [
    *("FOUNDRY_LOCAL_URLS", "FOUNDRY_LOCAL_PORT", "FOUNDRY_LOCAL_API_KEYS", "BASE_URL", "API_KEY", "MODEL"),
    *("CLOUD_BASE_URL", "CLOUD_API_KEY", "CLOUD_MODEL", "CLOUD_PROMPT_TOKENS", "PROFILE_ROUTES", "CHAT_PORT"),
    *("TEMPERATURE", "LOG_LEVEL", "MAX_INPUT_CHARS", "CHAT_USERNAME", "CHAT_PASSWORD", "CHAINLIT_AUTH_SECRET"),
]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)


def test_defaults_are_the_host_service_then_the_embedded_one() -> None:
    assert Settings().upstream_urls == ["http://host.docker.internal:51211/v1", "http://foundry-local:5273/v1"]


def test_host_port_follows_foundry_local_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FOUNDRY_LOCAL_PORT", "5000")
    assert Settings().upstream_urls[0] == "http://host.docker.internal:5000/v1"


def test_course_variables_keep_working(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BASE_URL", "http://localhost:5272/v1/")
    monkeypatch.setenv("API_KEY", "course-key")
    monkeypatch.setenv("MODEL", "phi-4-mini")
    settings = Settings()
    assert settings.upstream_urls[0] == "http://localhost:5272/v1"
    assert settings.model == "phi-4-mini"
    assert upstreams_from(settings)[0].api_key == "course-key"


def test_keys_follow_urls_by_position(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FOUNDRY_LOCAL_URLS", "http://a:1/v1, http://b:2/v1")
    monkeypatch.setenv("FOUNDRY_LOCAL_API_KEYS", "ka,")
    upstreams = upstreams_from(Settings())
    assert [(u.name, u.api_key) for u in upstreams] == [("a:1", "ka"), ("b:2", "not-needed")]


def test_cloud_upstream_goes_last(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FOUNDRY_LOCAL_URLS", "http://a:1/v1")
    monkeypatch.setenv("CLOUD_BASE_URL", "https://api.cloud.test/v1")
    monkeypatch.setenv("CLOUD_API_KEY", "secret")
    monkeypatch.setenv("CLOUD_MODEL", "big")
    cloud = upstreams_from(Settings())[-1]
    assert (cloud.cloud, cloud.fixed_model, cloud.api_key) == (True, "big", "secret")


def test_profile_routes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROFILE_ROUTES", "general=cloud")
    assert Settings().profile_routes == {"general": "cloud", "code": "local"}


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("FOUNDRY_LOCAL_URLS", "foundry-local:5273", "FOUNDRY_LOCAL_URLS='foundry-local:5273'"),
        ("FOUNDRY_LOCAL_URLS", "http://a:1/v1,ftp://b/v1", "not an http(s) URL"),
        ("BASE_URL", "http://host:port/v1", "invalid port"),
        ("PROFILE_ROUTES", "code=somewhere", "PROFILE_ROUTES"),
        ("PROFILE_ROUTES", "poetry=local", "unknown profile poetry"),
        ("TEMPERATURE", "hot", "TEMPERATURE='hot'"),
        ("LOG_LEVEL", "loud", "LOG_LEVEL='loud'"),
        ("CHAT_PORT", "70000", "CHAT_PORT='70000'"),
        ("CLOUD_BASE_URL", "https://api.cloud.test/v1", "CLOUD_MODEL is required"),
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
