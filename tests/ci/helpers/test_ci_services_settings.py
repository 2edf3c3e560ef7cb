"""ci_services.py with a pipeline file's service settings, against the real servers: the database, role and
password chosen, every variable applications read (libpq's PG*, POSTGRES_*, REDIS_*), the host's versions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from redis import Redis

pytestmark = pytest.mark.integration

SCRIPT = Path(__file__).resolve().parents[3] / "master" / "namaskah_ci" / "helpers" / "ci_services.py"
POSTGRES = ("PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE")
POSTGRES_APP = (
    "POSTGRES_HOST",
    "POSTGRES_SERVER",
    "POSTGRES_PORT",
    "POSTGRES_USER",
    "POSTGRES_PASSWORD",
    "POSTGRES_DB",
)
REDIS = ("REDIS_URL", "REDIS_HOST", "REDIS_PORT", "REDIS_PASSWORD")


def services(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
        check=False,
    )


def host_postgres_versions() -> list[str]:
    root = Path("/usr/lib/postgresql")
    return (
        sorted((p.name for p in root.iterdir() if (p / "bin" / "postgres").exists()), key=int) if root.exists() else []
    )


def test_the_chosen_database_user_and_password_and_every_variable_an_application_reads(tmp_path: Path) -> None:
    state, env_file = tmp_path / "services", tmp_path / "services.env"
    start = ["start", "--state-dir", str(state), "--env-file", str(env_file), "--postgres", "--redis"]
    start += ["--postgres-database", "app_test", "--postgres-user", "app", "--postgres-version", "15"]
    done = services(*start, env={"CI_SERVICES_POSTGRES_PASSWORD": "test-pw"})
    try:
        assert done.returncode == 0, done.stderr
        assert "test-pw" not in done.stdout + done.stderr
        assert (
            done.stdout.startswith("postgres: 127.0.0.1:") and "version 15, database app_test, user app" in done.stdout
        )
        assert oct(env_file.stat().st_mode & 0o777) == "0o600"
        values = dict(line.split("=", 1) for line in env_file.read_text().splitlines())
        assert set(values) == {"DATABASE_URL", *POSTGRES, *POSTGRES_APP, *REDIS}
        assert (values["PGUSER"], values["PGPASSWORD"], values["PGDATABASE"]) == ("app", "test-pw", "app_test")
        assert [values[k] for k in POSTGRES_APP] == [values[k] for k in ("PGHOST", "PGHOST", "PGPORT")] + [
            "app",
            "test-pw",
            "app_test",
        ]
        # libpq reads PG* alone: psql with no argument reaches the job's database as its role
        pg_only = {"PATH": os.environ["PATH"], **{k: values[k] for k in POSTGRES}}
        asked = "select current_user || ' ' || current_database() || ' ' || (select rolsuper from pg_roles "
        asked += "where rolname = current_user)"
        psql = subprocess.run(
            ["psql", "-tAc", asked], capture_output=True, text=True, env=pg_only, timeout=30, check=False
        )
        assert psql.stdout.strip() == "app app_test false", psql.stderr
        # an application building its own connection from POSTGRES_*
        with psycopg.connect(
            host=values["POSTGRES_SERVER"],
            port=int(values["POSTGRES_PORT"]),
            user=values["POSTGRES_USER"],
            password=values["POSTGRES_PASSWORD"],
            dbname=values["POSTGRES_DB"],
            connect_timeout=10,
        ) as conn:
            conn.execute("create table t (n int)")
        client = Redis(host=values["REDIS_HOST"], port=int(values["REDIS_PORT"]), password=values["REDIS_PASSWORD"])
        assert client.ping() is True
        client.close()
        assert values["REDIS_URL"] == f"redis://default:{values['REDIS_PASSWORD']}@127.0.0.1:{values['REDIS_PORT']}/0"
    finally:
        services("stop", "--state-dir", str(state), "--env-file", str(env_file))
    assert not env_file.exists() and not state.exists()


def test_a_version_the_host_lacks_fails_naming_the_versions_it_has(tmp_path: Path) -> None:
    done = services("start", "--state-dir", str(tmp_path / "s"), "--postgres", "--postgres-version", "99")
    assert done.returncode == 2
    available = ", ".join(host_postgres_versions())
    assert done.stderr == f"ci_services: postgres 99: not on this host (available: {available})\n"
    assert not (tmp_path / "s").exists()
    redis = services("start", "--state-dir", str(tmp_path / "s"), "--redis", "--redis-version", "5")
    assert redis.returncode == 2 and redis.stderr.startswith("ci_services: redis 5: not on this host (available: 7, ")


def test_a_name_or_password_that_would_need_quoting_is_refused_before_anything_starts(tmp_path: Path) -> None:
    name = services("start", "--state-dir", str(tmp_path / "s"), "--postgres", "--postgres-user", "app; drop")
    assert name.returncode == 2 and name.stderr.startswith("ci_services: --postgres-user 'app; drop': lower-case")
    quoted = "it's"
    password = services("start", "--state-dir", str(tmp_path / "s"), env={"CI_SERVICES_REDIS_PASSWORD": quoted})
    assert password.returncode == 2 and quoted not in password.stderr
    assert password.stderr.startswith("ci_services: $CI_SERVICES_REDIS_PASSWORD (redis's password): letters")
    assert not (tmp_path / "s").exists()


RUNNER_FILE = """
version: 1
jobs:
  db:
    requirements: []
    services:
      - {name: postgres, database: local_db, user: local_user, password: local-given}
    steps:
      - name: check
        run: |
          test "$PGPASSWORD" = local-given
          test "$POSTGRES_PASSWORD" = local-given
          test "$(psql -tAc 'select current_user || current_database()')" = local_userlocal_db
"""


def test_the_local_runner_gives_a_job_the_files_database_user_and_password(tmp_path: Path) -> None:
    """scripts/run_ci_checks.sh, the same commands on a developer's machine: the password the file gives
    reaches ci_services.py (in its environment, never its argv, which the runner prints)."""
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / ".namaskah-ci.yml").write_text(RUNNER_FILE)
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=repo, check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")}
    env.update(PIPELINE_SECRETS_DIR=str(tmp_path / "no-secrets"), XDG_STATE_HOME=str(tmp_path / "state"))
    results = tmp_path / "results.json"
    runner = SCRIPT.parents[3] / "scripts" / "run_ci_checks.sh"
    done = subprocess.run(
        [str(runner), "--repo", str(repo), "--json", str(results), "--state", str(tmp_path / "checks")],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert [(r["job"], r["result"]) for r in json.loads(results.read_text())] == [("db", "success")]
    (start,) = [line for line in done.stdout.splitlines() if "ci_services.py start" in line]
    assert "--postgres-database local_db --postgres-user local_user" in start and "local-given" not in start
