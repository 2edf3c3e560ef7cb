"""A job's commands start with the job's environment only (`job_commands` + the `ci_step.py` helper).

Real processes: the helper runs `env` with a worker environment that carries a token-shaped
variable no secret provider knows and the master's PYTHONPATH; neither reaches the command.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from namaskah_ci.helpers import HELPERS_DIR, scripts
from namaskah_ci.jobs import commands as job_commands
from namaskah_ci.pipeline.model import load_pipeline
from pipeline_support import job_of

STEP = Path(HELPERS_DIR) / "ci_step.py"
FILE = """
version: 1
env: {APP_ENV: test, PORT: 8000}
jobs:
  api:
    services: [postgres]
    secrets: [codecov_token]
    priority: high
    env: {SECRET_KEY: file-value}
    steps: [env]
"""
MASTER_ENV = {
    "GITHUB_TOKEN": "ghp_" + "A1b2C3d4E5f6G7h8I9j0" * 2,
    "PYTHONPATH": "/srv/master/namaskah",
    "PIPELINE_CONFIG": "/etc/namaskah/pipeline.toml",
    "HOME": "/home/ci",
}


def job():
    return job_of(load_pipeline(FILE, ".namaskah-ci.yml"), "api")


def layout(job_dir: Path) -> job_commands.JobLayout:
    return job_commands.JobLayout(
        runner=sys.executable, helpers_dir=HELPERS_DIR, cache_root="/cache", job_dir=str(job_dir)
    )


def write_job_dir(job_dir: Path, **kwargs) -> dict:
    document = job_commands.job_document(
        job(),
        layout(job_dir),
        interpreter=sys.executable,
        base_path="/usr/bin:/bin",
        worker_env={"PIP_INDEX_URL": "https://mirror.example/simple"},
        revision="abc123",
        branch="main",
        **kwargs,
    )
    (job_dir / "secrets").mkdir(parents=True)
    (job_dir / "job.json").write_text(json.dumps(document))
    secret = job_dir / "secrets" / "CODECOV_TOKEN"
    secret.write_text("codecov-value\n")
    secret.chmod(0o600)
    return document


def run_env(job_dir: Path, environ: dict) -> dict:
    argv = layout(job_dir).wrap(["env"])
    done = subprocess.run(argv, env=environ, capture_output=True, text=True, timeout=30, check=True)
    return dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)


def test_the_document_is_the_operators_then_namaskahs_then_the_files(tmp_path):
    document = write_job_dir(tmp_path / "job", nice=True)
    env = document["env"]
    assert (
        env["PIP_INDEX_URL"] == "https://mirror.example/simple" and env["APP_ENV"] == "test" and env["PORT"] == "8000"
    )
    assert env["SECRET_KEY"] == "file-value" and env["CI"] == "true" and env["NAMASKAH_CI_BUILDER"] == "api"
    assert env["NAMASKAH_CI_REVISION"] == "abc123" and env["PIP_CACHE_DIR"] == "/cache/pip-3.11"
    assert document["pass"] == list(job_commands.SERVICE_ENV["postgres"])
    assert document["nice"] == job_commands.PRIORITY_NICENESS["high"]
    assert "codecov-value" not in json.dumps(document)


def test_a_command_gets_exactly_the_jobs_environment(tmp_path):
    job_dir = tmp_path / "job"
    write_job_dir(job_dir)
    environ = {
        **MASTER_ENV,
        "PATH": os.environ["PATH"],
        "DATABASE_URL": "postgresql://ci@127.0.0.1:5999/ci",
        "REDIS_URL": "redis://127.0.0.1:6999/0",
    }
    env = run_env(job_dir, environ)
    expected = {
        "PATH",
        "HOME",
        "LANG",
        "TMPDIR",
        "PWD",
        "SHLVL",
        "_",
        "NAMASKAH_CI_HELPERS",
        "NAMASKAH_CI_ENV",
        "CODECOV_TOKEN",
        "DATABASE_URL",
        "PIP_INDEX_URL",
        "APP_ENV",
        "PORT",
        "SECRET_KEY",
    } | set(json.loads((job_dir / "job.json").read_text())["env"])
    assert set(env) <= expected, set(env) - expected
    for name in ("GITHUB_TOKEN", "PYTHONPATH", "PIPELINE_CONFIG", "REDIS_URL"):
        assert name not in env
    assert MASTER_ENV["GITHUB_TOKEN"] not in "\n".join(env.values())
    assert env["CODECOV_TOKEN"] == "codecov-value" and env["DATABASE_URL"].endswith(":5999/ci")
    assert env["TMPDIR"] == str(job_dir / "tmp") and (job_dir / "tmp").is_dir()
    assert env["PATH"].split(":")[0] == str(Path(sys.executable).parent) and env["PATH"].endswith("/usr/bin:/bin")
    assert env["HOME"] == "/home/ci" and env["NAMASKAH_CI_HELPERS"] == HELPERS_DIR


def test_a_recorded_virtualenv_comes_first_on_the_path(tmp_path):
    job_dir = tmp_path / "job"
    write_job_dir(job_dir)
    (job_dir / "venv").write_text("/cache/venvs/py3.11-abc\n")
    env = run_env(job_dir, {"PATH": os.environ["PATH"]})
    assert env["PATH"].startswith("/cache/venvs/py3.11-abc/bin:") and env["VIRTUAL_ENV"] == "/cache/venvs/py3.11-abc"


def test_a_missing_program_is_one_line(tmp_path):
    job_dir = tmp_path / "job"
    write_job_dir(job_dir)
    done = subprocess.run(
        layout(job_dir).wrap(["no-such-program-here"]), capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 127 and "cannot run 'no-such-program-here'" in done.stderr


def test_step_lines_run_in_bash_with_errexit_and_pipefail(tmp_path):
    job_dir = tmp_path / "job"
    write_job_dir(job_dir)
    spec = job_of(load_pipeline("version: 1\njobs:\n  a:\n    steps: ['false | true; echo after']\n", "f"), "a")
    argv = job_commands.step_argv(layout(job_dir), spec.steps[0])
    assert argv[-6:-1] == ["bash", "-e", "-o", "pipefail", "-c"]
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=30, env={"PATH": os.environ["PATH"]}, check=False
    )
    assert done.returncode == 1 and "after" not in done.stdout


def test_the_helpers_run_on_python_3_9():
    """Docker images of Python 3.9 run the helpers with their python3."""
    python39 = [
        p
        for p in (Path("/usr/bin/python3.9"), *sorted(Path.home().glob(".pyenv/versions/3.9.*/bin/python3.9")))
        if p.exists()
    ]
    if not python39:
        pytest.skip("no Python 3.9 on this machine")
    for script in scripts():
        path = str(Path(HELPERS_DIR) / script)
        check = f"compile(open({path!r}).read(), {path!r}, 'exec')"
        done = subprocess.run([str(python39[0]), "-c", check], capture_output=True, text=True, timeout=30, check=False)
        assert done.returncode == 0, (script, done.stderr)


def test_a_virtualenv_of_another_python_than_the_jobs_is_refused(tmp_path):
    job_dir = tmp_path / "job"
    write_job_dir(job_dir)  # the job asks for Python 3.11
    fake = tmp_path / "python3"
    fake.write_text("#!/bin/sh\necho 3.9\n")
    fake.chmod(0o755)
    argv = job_commands.venv_argv(layout(job_dir), job(), str(fake))
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=60, env={"PATH": os.environ["PATH"]}, check=False
    )
    assert done.returncode == 2
    assert f"{fake} is Python 3.9, but the job asks for Python 3.11" in done.stderr
