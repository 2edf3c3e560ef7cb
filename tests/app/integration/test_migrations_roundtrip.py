"""Alembic on an empty PostgreSQL 15 database: upgrade head, downgrade -1, upgrade head, upgrade head.

Runs the `alembic` command line as the migration-test job does, with Render's
`postgres://` URL form, and checks the schema matches the models afterwards.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Dict, Iterator, List, Set

import psycopg
import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, inspect

from app.config import normalise_database_url

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]


def _with_database(url: str, name: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


def _admin(url: str, sql: str) -> None:
    with psycopg.connect(
        url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True, connect_timeout=10
    ) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


@pytest.fixture
def empty_database(service_urls: Dict[str, str]) -> Iterator[str]:
    """A fresh database on the session's server, dropped afterwards; returned in `postgres://` form."""
    admin_url = service_urls["DATABASE_URL"]
    name = f"roundtrip_{uuid.uuid4().hex[:12]}"
    _admin(admin_url, f"CREATE DATABASE {name}")
    try:
        yield _with_database(admin_url, name).replace("postgresql://", "postgres://", 1)
    finally:
        _admin(admin_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def alembic(url: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, DATABASE_URL=url)
    return subprocess.run(
        [sys.executable, "-m", "alembic", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def tables(url: str) -> Set[str]:
    engine = create_engine(normalise_database_url(url))
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def columns(url: str) -> List[str]:
    engine = create_engine(normalise_database_url(url))
    try:
        return [column["name"] for column in inspect(engine).get_columns("verifications")]
    finally:
        engine.dispose()


def current(url: str) -> str:
    done = alembic(url, "current")
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_round_trip_succeeds_on_an_empty_database(empty_database: str) -> None:
    assert tables(empty_database) == set()
    for step in (["upgrade", "head"], ["downgrade", "-1"], ["upgrade", "head"], ["upgrade", "head"]):
        done = alembic(empty_database, *step)
        assert done.returncode == 0, f"alembic {' '.join(step)} failed:\n{done.stderr}"
    assert current(empty_database) == "0002 (head)"
    assert {"verifications", "alembic_version"} <= tables(empty_database)
    assert {"verified_at", "provider_message_id"} <= set(columns(empty_database))


def test_downgrade_minus_one_really_undoes_the_last_revision(empty_database: str) -> None:
    assert alembic(empty_database, "upgrade", "head").returncode == 0
    assert alembic(empty_database, "downgrade", "-1").returncode == 0
    assert current(empty_database) == "0001"
    assert "verified_at" not in columns(empty_database)
    assert alembic(empty_database, "downgrade", "base").returncode == 0
    assert tables(empty_database) == {"alembic_version"}


def test_the_models_match_the_migrations(empty_database: str) -> None:
    assert alembic(empty_database, "upgrade", "head").returncode == 0
    done = alembic(empty_database, "check")
    assert done.returncode == 0, done.stdout + done.stderr


def test_offline_sql_can_be_generated(empty_database: str) -> None:
    done = alembic(empty_database, "upgrade", "head", "--sql")
    assert done.returncode == 0, done.stderr
    assert "CREATE TABLE verifications" in done.stdout


def test_a_missing_database_url_is_one_clear_line() -> None:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    done = subprocess.run(
        [sys.executable, "-m", "alembic", "current"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    assert "DATABASE_URL is not set" in done.stderr


def test_the_session_database_is_at_head(migrated_database: str) -> None:
    config = Config(str(ROOT / "alembic.ini"))
    config.attributes["database_url"] = migrated_database
    config.attributes["configure_logger"] = False
    command.upgrade(config, "head")  # a second upgrade is a no-op
    assert current(migrated_database) == "0002 (head)"
