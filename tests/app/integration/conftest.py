"""Integration fixtures: real PostgreSQL 15 and Redis 7.

The servers are the ones named by DATABASE_URL and REDIS_URL (CI's integration job
gets them from its `services:`); when a variable is missing, this session starts that
server itself with Namaskah CI's `ci_services.py` (from $NAMASKAH_CI_HELPERS in a
pipeline job, else from this checkout's master/) and stops it at the end. A few tests
start throwaway servers of their own the same way. The schema comes from `alembic
upgrade head`, run once per session.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Dict, Iterator, List

import pytest
from alembic import command
from alembic.config import Config
from fastapi.testclient import TestClient
from redis import Redis

from app import db, redis_client
from app.config import Settings, normalise_database_url
from app.container import Container
from app.main import create_app
from app.sms import RecordingSmsProvider

ROOT = Path(__file__).resolve().parents[3]
HELPERS = os.environ.get("NAMASKAH_CI_HELPERS") or ROOT / "master" / "namaskah_ci" / "helpers"
CI_SERVICES = Path(HELPERS) / "ci_services.py"
START_TIMEOUT_SECONDS = 60


def parse_env_lines(text: str) -> Dict[str, str]:
    values = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and key.isupper():
            values[key] = value
    return values


def ci_services(*args: str, timeout: float = START_TIMEOUT_SECONDS + 30) -> subprocess.CompletedProcess:
    if not CI_SERVICES.is_file():
        pytest.fail(f"{CI_SERVICES} not found: set DATABASE_URL and REDIS_URL, or NAMASKAH_CI_HELPERS", False)
    return subprocess.run(
        [sys.executable, str(CI_SERVICES), *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


def start_services(state_dir: Path, flags: List[str]) -> Dict[str, str]:
    done = ci_services("start", "--state-dir", str(state_dir), "--timeout", str(START_TIMEOUT_SECONDS), *flags)
    if done.returncode != 0:
        pytest.fail(f"ci_services.py start {' '.join(flags)} failed ({done.returncode}):\n{done.stderr}", False)
    return parse_env_lines(done.stdout)


def stop_services(state_dir: Path) -> None:
    ci_services("stop", "--state-dir", str(state_dir), timeout=90)


@pytest.fixture(scope="session")
def service_urls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dict[str, str]]:
    """{"DATABASE_URL": ..., "REDIS_URL": ...} of live servers, exported to os.environ for the session."""
    wanted = {"DATABASE_URL": "--postgres", "REDIS_URL": "--redis"}
    urls = {key: os.environ[key] for key in wanted if os.environ.get(key)}
    missing = [flag for key, flag in wanted.items() if key not in urls]
    state_dir = tmp_path_factory.mktemp("services") / "state"
    saved = {key: os.environ.get(key) for key in wanted}
    try:
        if missing:
            urls.update(start_services(state_dir, missing))
        os.environ.update(urls)
        yield urls
    finally:
        if missing:
            stop_services(state_dir)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def alembic_config(database_url: str) -> Config:
    config = Config(str(ROOT / "alembic.ini"))
    config.attributes["database_url"] = database_url
    config.attributes["configure_logger"] = False
    return config


@pytest.fixture(scope="session")
def migrated_database(service_urls: Dict[str, str]) -> str:
    """The session database, upgraded to head through Alembic (never `create_all`)."""
    url = service_urls["DATABASE_URL"]
    command.upgrade(alembic_config(url), "head")
    return url


@pytest.fixture(scope="session")
def base_settings(migrated_database: str, service_urls: Dict[str, str]) -> Settings:
    return Settings(
        database_url=normalise_database_url(migrated_database),
        redis_url=service_urls["REDIS_URL"],
        environment="test",
        git_commit="integration",
    )


@pytest.fixture
def make_app_client(base_settings: Settings) -> Iterator:
    """Build an app on the real servers (recording SMS provider); closed after the test."""
    opened: List[TestClient] = []

    def build(**overrides: object) -> "tuple[TestClient, Container, RecordingSmsProvider]":
        settings = dataclasses.replace(base_settings, **overrides)
        sms = RecordingSmsProvider()
        engine = db.make_engine(settings.database_url, settings.dependency_timeout_seconds)
        client_redis: Redis = redis_client.make_redis(settings.redis_url, settings.dependency_timeout_seconds)
        container = Container.assemble(settings, engine, client_redis, sms)
        client = TestClient(create_app(lambda: container), raise_server_exceptions=False)
        client.__enter__()
        opened.append(client)
        return client, container, sms

    yield build
    for client in opened:
        client.__exit__(None, None, None)


@pytest.fixture
def phone() -> str:
    """A phone number no other test (or earlier run against the same Redis) has used."""
    return "+1555" + f"{uuid.uuid4().int % 10**7:07d}"


class ServiceControl:
    """What the tests may call without importing this module (pytest runs with --import-mode=importlib)."""

    start = staticmethod(start_services)
    stop = staticmethod(stop_services)
    run = staticmethod(ci_services)
    alembic_config = staticmethod(alembic_config)
    script = CI_SERVICES


@pytest.fixture(scope="session")
def services_ctl() -> ServiceControl:
    return ServiceControl()
