"""Settings from the environment and DATABASE_URL normalisation."""

from __future__ import annotations

import pytest

from app.config import DEFAULT_REDIS_URL, ConfigError, Settings, normalise_database_url


@pytest.mark.parametrize(
    "url, expected",
    [
        ("postgres://u:p@db:5432/app", "postgresql+psycopg://u:p@db:5432/app"),
        ("postgresql://u:p@db/app", "postgresql+psycopg://u:p@db/app"),
        ("postgresql+psycopg2://u@db/app", "postgresql+psycopg://u@db/app"),
        ("POSTGRES://u@db/app", "postgresql+psycopg://u@db/app"),
        ("  postgresql+psycopg://u@db/app\n", "postgresql+psycopg://u@db/app"),
        ("sqlite+pysqlite://", "sqlite+pysqlite://"),
    ],
)
def test_database_urls_are_normalised_to_psycopg(url: str, expected: str) -> None:
    assert normalise_database_url(url) == expected


def test_a_url_without_scheme_is_refused() -> None:
    with pytest.raises(ConfigError, match="DATABASE_URL"):
        normalise_database_url("db.example:5432/app")


def test_defaults_when_the_environment_is_empty() -> None:
    settings = Settings.from_env({})
    assert settings.git_commit == "unknown"
    assert settings.redis_url == DEFAULT_REDIS_URL
    assert settings.sms_provider == "log"
    assert settings.environment == "production"
    assert settings.production_like
    assert settings.rate_limit_count == 5 and settings.rate_limit_window_seconds == 600
    assert settings.database_url.startswith("postgresql+psycopg://")


def test_values_come_from_the_environment() -> None:
    settings = Settings.from_env(
        {
            "DATABASE_URL": "postgres://render:pw@dpg-x/namaskah",
            "REDIS_URL": "redis://cache:6379/1",
            "RENDER_GIT_COMMIT": " 0123abc ",
            "SMS_PROVIDER": "Recording",
            "APP_ENV": "development",
            "RATE_LIMIT_COUNT": "7",
            "VERIFICATION_TTL_SECONDS": "",
        }
    )
    assert settings.database_url == "postgresql+psycopg://render:pw@dpg-x/namaskah"
    assert settings.redis_url == "redis://cache:6379/1"
    assert settings.git_commit == "0123abc"
    assert settings.sms_provider == "recording"
    assert not settings.production_like
    assert settings.rate_limit_count == 7
    assert settings.code_ttl_seconds == 600


@pytest.mark.parametrize("value, problem", [("ten", "whole number"), ("0", "positive"), ("-3", "positive")])
def test_bad_numbers_name_the_variable(value: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=f"RATE_LIMIT_COUNT must be.*{problem}|RATE_LIMIT_COUNT must be {problem}"):
        Settings.from_env({"RATE_LIMIT_COUNT": value})


def test_from_env_reads_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RENDER_GIT_COMMIT", "feedbeef")
    monkeypatch.delenv("DATABASE_URL", raising=False)
    assert Settings.from_env().git_commit == "feedbeef"
