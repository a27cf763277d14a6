"""Settings: read once from SPORTELLO_* variables, and a wrong value stops start-up with its name."""

from __future__ import annotations

from pathlib import Path

import pytest

from sportello.errors import ConfigurationError
from sportello.settings import Settings, load_settings

AMQP = "amqp://sportello:s3cr3t-pw@127.0.0.1:5672/"


@pytest.fixture
def env(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    tenants = tmp_path / "tenants"
    tenants.mkdir()
    clean_env.chdir(tmp_path)
    clean_env.setenv("SPORTELLO_AMQP_URI", AMQP)
    clean_env.setenv("SPORTELLO_TENANTS_DIR", str(tenants))
    return clean_env


def test_loads_from_environment(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    settings = load_settings()
    assert isinstance(settings, Settings)
    assert settings.amqp_uri == AMQP
    assert settings.tenants_dir == tmp_path / "tenants"
    assert settings.database_url is None
    assert settings.log_level == "INFO"


@pytest.mark.parametrize("variable", ["SPORTELLO_AMQP_URI", "SPORTELLO_TENANTS_DIR"])
def test_missing_required_setting_names_the_variable(env: pytest.MonkeyPatch, variable: str) -> None:
    env.delenv(variable)
    with pytest.raises(ConfigurationError) as raised:
        load_settings()
    assert variable in raised.value.detail
    assert raised.value.code == "configuration.invalid"


def test_nothing_required_has_a_default(clean_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigurationError) as raised:
        load_settings()
    assert "SPORTELLO_AMQP_URI" in raised.value.detail
    assert "SPORTELLO_TENANTS_DIR" in raised.value.detail


@pytest.mark.parametrize("uri", ["http://guest:guest@localhost:5672/", "redis://localhost", "localhost:5672"])
def test_bad_amqp_scheme(env: pytest.MonkeyPatch, uri: str) -> None:
    env.setenv("SPORTELLO_AMQP_URI", uri)
    with pytest.raises(ConfigurationError) as raised:
        load_settings()
    assert "SPORTELLO_AMQP_URI" in raised.value.detail
    assert "amqp://" in raised.value.detail


@pytest.mark.parametrize("uri", ["amqp://u:p@h:5672/", "amqps://u:p@h:5671/vhost", "pyamqp://u:p@h//"])
def test_amqp_schemes_accepted(env: pytest.MonkeyPatch, uri: str) -> None:
    env.setenv("SPORTELLO_AMQP_URI", uri)
    assert load_settings().amqp_uri == uri


def test_error_does_not_echo_the_broker_credentials(env: pytest.MonkeyPatch) -> None:
    env.setenv("SPORTELLO_AMQP_URI", "http://sportello:hunter2-very-secret@broker:5672/")
    with pytest.raises(ConfigurationError) as raised:
        load_settings()
    assert "hunter2-very-secret" not in str(raised.value)


def test_non_existent_tenants_dir(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    env.setenv("SPORTELLO_TENANTS_DIR", str(missing))
    with pytest.raises(ConfigurationError) as raised:
        load_settings()
    assert "SPORTELLO_TENANTS_DIR" in raised.value.detail
    assert str(missing) in raised.value.detail


def test_tenants_dir_must_be_a_folder(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    a_file = tmp_path / "tenants.yaml"
    a_file.write_text("id: x\n", encoding="utf-8")
    env.setenv("SPORTELLO_TENANTS_DIR", str(a_file))
    with pytest.raises(ConfigurationError, match="SPORTELLO_TENANTS_DIR"):
        load_settings()


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SPORTELLO_LOG_LEVEL", "CHATTY"),
        ("SPORTELLO_LOG_FORMAT", "xml"),
        ("SPORTELLO_OUTBOX_POLL_SECONDS", "0"),
        ("SPORTELLO_OUTBOX_BATCH_SIZE", "-1"),
        ("SPORTELLO_GATEWAY_ADDRESS", "no port here"),
        ("SPORTELLO_RPC_TIMEOUT_SECONDS", "1000"),
    ],
)
def test_invalid_optional_setting_names_the_variable(env: pytest.MonkeyPatch, variable: str, value: str) -> None:
    env.setenv(variable, value)
    with pytest.raises(ConfigurationError) as raised:
        load_settings()
    assert variable in raised.value.detail


def test_retry_delays_must_be_positive(env: pytest.MonkeyPatch) -> None:
    env.setenv("SPORTELLO_EVENT_RETRY_DELAYS_MS", "[1000, 0]")
    with pytest.raises(ConfigurationError, match="SPORTELLO_EVENT_RETRY_DELAYS_MS"):
        load_settings()


def test_retry_delays_from_environment(env: pytest.MonkeyPatch) -> None:
    env.setenv("SPORTELLO_EVENT_RETRY_DELAYS_MS", "[100, 200]")
    assert load_settings().event_retry_delays_ms == (100, 200)


def test_overrides_win_over_environment(env: pytest.MonkeyPatch) -> None:
    assert load_settings(log_level="DEBUG").log_level == "DEBUG"


def test_settings_are_frozen(env: pytest.MonkeyPatch) -> None:
    settings = load_settings()
    with pytest.raises(ValueError, match="frozen"):
        settings.log_level = "DEBUG"  # type: ignore[misc]


def test_database_url_for_gives_each_service_its_own_sqlite_file(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    data = tmp_path / "data" / "nested"
    settings = load_settings(data_dir=data)
    urls = {service: settings.database_url_for(service) for service in ("anpr", "pagopa", "spid", "appio")}
    assert len(set(urls.values())) == 4
    for service, url in urls.items():
        assert url == f"sqlite:///{(data / f'{service}.sqlite3').resolve()}"
    assert data.is_dir(), "the data folder is created on demand"


def test_default_data_dir_is_relative_to_working_directory(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    url = load_settings().database_url_for("anpr")
    assert url == f"sqlite:///{(tmp_path / 'var' / 'anpr.sqlite3').resolve()}"


def test_explicit_database_url_wins(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    explicit = "postgresql+psycopg2://sportello:pw@db:5432/anpr"
    env.setenv("SPORTELLO_DATABASE_URL", explicit)
    env.setenv("SPORTELLO_DATA_DIR", str(tmp_path / "unused"))
    settings = load_settings()
    assert settings.database_url_for("anpr") == explicit
    assert settings.database_url_for("pagopa") == explicit
    assert not (tmp_path / "unused").exists()
