"""What a job's service settings become on the worker in local mode: `ci_services.py start`'s argv (the
version, database and user: the step's log shows it, so never a password), the password in the start
step's environment only, and every variable of its services passed to the job's commands (`job.json`)."""

from __future__ import annotations

import json

from namaskah_ci.jobs import commands as job_commands
from namaskah_ci.jobs.commands import JobLayout
from namaskah_ci.pipeline.model import load_pipeline
from namaskah_ci.pipeline.specs import JobSpec
from namaskah_ci.steps.job_steps import JobSetup, job_steps
from namaskah_ci.steps.services import StartServices

LAYOUT = JobLayout("/m/python", "/m/helpers", "/cache")
FILE = """
version: 1
jobs:
  api:
    requirements: []
    services:
      - {name: postgres, version: "16", database: app_test, user: app, password: pg-given}
      - {name: redis, password: redis-given}
    steps: [pytest]
  plain:
    requirements: []
    services: [postgres]
    steps: [pytest]
"""
PIPELINE = load_pipeline(FILE, ".namaskah-ci.yml")


def job(builder: str) -> JobSpec:
    found = PIPELINE.job(builder)
    assert found is not None
    return found


def test_the_start_argv_names_version_database_and_user_and_never_a_password() -> None:
    argv = job_commands.services_argv(LAYOUT, "start", "../services", job("api"))
    assert argv[argv.index("--postgres") :] == [
        "--postgres",
        "--postgres-version",
        "16",
        "--postgres-database",
        "app_test",
        "--postgres-user",
        "app",
        "--redis",
    ]
    assert "pg-given" not in json.dumps(argv) and "redis-given" not in json.dumps(argv)
    assert job_commands.services_argv(LAYOUT, "start", "../services", job("plain"))[-1] == "--postgres"  # defaults


def test_the_passwords_go_to_the_start_steps_environment_only() -> None:
    assert job_commands.services_password_env(job("api")) == {
        "CI_SERVICES_POSTGRES_PASSWORD": "pg-given",
        "CI_SERVICES_REDIS_PASSWORD": "redis-given",
    }
    assert job_commands.services_password_env(job("plain")) == {}
    setup = JobSetup(mode="local", layout=LAYOUT, repo_url="/srv/git/app.git", base_path="/usr/bin:/bin")
    [start] = [step for step in job_steps(job("api"), setup, "python3.11", set()) if isinstance(step, StartServices)]
    assert start.env == job_commands.services_password_env(job("api")) and not start.logEnviron
    assert "pg-given" not in json.dumps(start.command)


def test_every_variable_of_the_jobs_services_is_passed_to_its_commands() -> None:
    document = job_commands.job_document(job("api"), LAYOUT, interpreter="python3", base_path="/bin", worker_env={})
    assert document["pass"] == [
        "DATABASE_URL",
        "PGHOST",
        "PGPORT",
        "PGUSER",
        "PGPASSWORD",
        "PGDATABASE",
        "POSTGRES_HOST",
        "POSTGRES_PORT",
        "POSTGRES_USER",
        "POSTGRES_PASSWORD",
        "POSTGRES_SERVER",
        "POSTGRES_DB",
        "REDIS_URL",
        "REDIS_HOST",
        "REDIS_PORT",
        "REDIS_PASSWORD",
    ]
    assert "pg-given" not in json.dumps(document) and "redis-given" not in json.dumps(document)
