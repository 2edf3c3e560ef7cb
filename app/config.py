"""Settings from the environment, read once per application start.

`DATABASE_URL` (PostgreSQL; Render's `postgres://` form is accepted and normalised to
the psycopg 3 driver), `REDIS_URL`, `RENDER_GIT_COMMIT` (the deployed commit),
`SMS_PROVIDER` (`log` by default), `APP_ENV` (`production` unless told otherwise:
only `development` and `test` may log verification codes) and `SECRET_KEY` (an
optional pepper for the code hashes).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Mapping, Optional

DEFAULT_DATABASE_URL = "postgresql+psycopg://namaskah@127.0.0.1:5432/namaskah"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
NON_PRODUCTION_ENVIRONMENTS = frozenset({"development", "dev", "local", "test"})


class ConfigError(ValueError):
    """A setting has a value the service cannot use; the message names the variable."""


def normalise_database_url(url: str) -> str:
    """Map `postgres://` and `postgresql://` (with or without a driver) to `postgresql+psycopg://`.

    Other schemes (e.g. `sqlite://` for tests) are returned unchanged.
    """
    url = url.strip()
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ConfigError("DATABASE_URL must look like postgresql://user:password@host:port/dbname")
    base = scheme.split("+", 1)[0].lower()
    if base in ("postgres", "postgresql"):
        return f"postgresql+psycopg://{rest}"
    return url


def _positive_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if value <= 0:
        raise ConfigError(f"{name} must be positive, got {value}")
    return value


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything the service reads from its environment."""

    database_url: str = DEFAULT_DATABASE_URL
    redis_url: str = DEFAULT_REDIS_URL
    git_commit: str = "unknown"
    sms_provider: str = "log"
    environment: str = "production"
    secret_key: str = ""
    code_ttl_seconds: int = 600
    max_check_attempts: int = 5
    rate_limit_count: int = 5
    rate_limit_window_seconds: int = 600
    dependency_timeout_seconds: int = 3

    @property
    def production_like(self) -> bool:
        """True unless APP_ENV names a development or test environment."""
        return self.environment not in NON_PRODUCTION_ENVIRONMENTS

    @classmethod
    def from_env(cls, env: Optional[Mapping[str, str]] = None) -> "Settings":
        """Build settings from `env` (default: `os.environ`); raise ConfigError on bad values."""
        env = os.environ if env is None else env
        commit = env.get("RENDER_GIT_COMMIT", "").strip()
        return cls(
            database_url=normalise_database_url(env.get("DATABASE_URL") or DEFAULT_DATABASE_URL),
            redis_url=(env.get("REDIS_URL") or DEFAULT_REDIS_URL).strip(),
            git_commit=commit or "unknown",
            sms_provider=(env.get("SMS_PROVIDER") or "log").strip().lower(),
            environment=(env.get("APP_ENV") or "production").strip().lower(),
            secret_key=env.get("SECRET_KEY", ""),
            code_ttl_seconds=_positive_int(env, "VERIFICATION_TTL_SECONDS", 600),
            max_check_attempts=_positive_int(env, "VERIFICATION_MAX_ATTEMPTS", 5),
            rate_limit_count=_positive_int(env, "RATE_LIMIT_COUNT", 5),
            rate_limit_window_seconds=_positive_int(env, "RATE_LIMIT_WINDOW_SECONDS", 600),
            dependency_timeout_seconds=_positive_int(env, "DEPENDENCY_TIMEOUT_SECONDS", 3),
        )
