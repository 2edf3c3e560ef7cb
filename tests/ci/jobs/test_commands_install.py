"""A job with `install:` (issue 23 item 4): its job.json, the venv step's argv, its commands' environment.

job.json carries the install and the job's working directory (ci_step.py's venv step hands both to
ci_venv.py); every later command gets the venv first on PATH and, for uv, UV_PROJECT_ENVIRONMENT
with UV_NO_SYNC/UV_FROZEN (`uv run` uses the cached venv and never syncs into it), for poetry
POETRY_VIRTUALENVS_CREATE=false (`poetry run` uses the active venv). Real processes: ci_step.py runs `env`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from namaskah_ci.helpers import HELPERS_DIR
from namaskah_ci.jobs import commands as job_commands
from namaskah_ci.pipeline.model import load_pipeline


def job_of(pipeline, builder: str):
    found = pipeline.job(builder)
    assert found is not None, f"no job {builder!r} in {pipeline.builders}"
    return found


FILE = """
version: 1
jobs:
  uv-job: {install: {uv: {groups: [lint]}}, steps: [uv run pytest]}
  poetry-job: {install: {poetry: {with: [test]}}, steps: [poetry run pytest]}
  pip-job: {install: {pip: [".[test]"]}, steps: [pytest]}
  plain: {requirements: [requirements.txt], steps: [pytest]}
"""


def job(builder: str):
    return job_of(load_pipeline(FILE, ".namaskah-ci.yml"), builder)


def layout(job_dir: Path) -> job_commands.JobLayout:
    return job_commands.JobLayout(
        runner=sys.executable, helpers_dir=HELPERS_DIR, cache_root="/cache", job_dir=str(job_dir)
    )


def document(builder: str, job_dir: Path) -> dict:
    return job_commands.job_document(
        job(builder), layout(job_dir), interpreter=sys.executable, base_path="/usr/bin:/bin", worker_env={}
    )


def test_job_json_carries_the_install_and_the_jobs_working_directory(tmp_path):
    uv = document("uv-job", tmp_path)
    assert uv["install"] == {"tool": "uv", "groups": ["lint"], "extras": [], "all_extras": False, "specs": []}
    assert uv["working_directory"] == ""  # the checkout root (the job's working_directory when it has one)
    assert document("poetry-job", tmp_path)["install"]["groups"] == ["test"]
    pip = document("pip-job", tmp_path)
    assert pip["install"]["specs"] == [".[test]"] and pip["working_directory"] == ""
    assert "install" not in document("plain", tmp_path)


def test_the_venv_step_is_the_same_command_for_an_install():
    argv = job_commands.venv_argv(layout(Path("../.namaskah-ci")), job("uv-job"), "python3.11")
    assert argv[-5:] == ["venv", "--python", "python3.11", "--cache-root", "/cache"]  # no -r: job.json says


@pytest.mark.parametrize(
    ("builder", "expected"),
    [
        ("uv-job", {"UV_PROJECT_ENVIRONMENT": "VENV", "UV_NO_SYNC": "1", "UV_FROZEN": "1"}),
        ("poetry-job", {"POETRY_VIRTUALENVS_CREATE": "false"}),
        ("pip-job", {}),
    ],
)
def test_the_jobs_commands_use_the_cached_venv(tmp_path, builder, expected):
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    (job_dir / "job.json").write_text(json.dumps(document(builder, job_dir)))
    venv = tmp_path / "cache" / "venvs" / "py3.11-0123456789abcdef"
    (job_dir / "venv").write_text(f"{venv}\n")
    done = subprocess.run(layout(job_dir).wrap(["env"]), capture_output=True, text=True, timeout=30, check=True)
    env = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    assert env["PATH"].startswith(f"{venv}/bin:") and env["VIRTUAL_ENV"] == str(venv)
    for name, value in expected.items():
        assert env[name] == (str(venv) if value == "VENV" else value)
    if builder == "pip-job":
        assert not any(name.startswith(("UV_", "POETRY_")) for name in env)


def test_docker_mode_runs_the_same_install_from_the_helpers_copied_into_the_build():
    """Docker mode: the worker image's python3 runs the helpers copied beside the checkout (ci_install.py
    among them), the cache is the build's volume; job.json and the venv step are the same as local mode's."""
    from namaskah_ci.helpers import scripts
    from namaskah_ci.workers.docker.config import CACHE_MOUNT, HELPERS_MOUNT

    assert "ci_install.py" in scripts()  # every ci_*.py is copied into each build
    docker = job_commands.JobLayout(runner="python3", helpers_dir=HELPERS_MOUNT, cache_root=CACHE_MOUNT)
    argv = job_commands.venv_argv(docker, job("uv-job"), "python3.11")
    assert argv == [
        "python3",
        f"{HELPERS_MOUNT}/ci_step.py",
        "--job-dir",
        job_commands.JOB_DIR,
        "venv",
        "--python",
        "python3.11",
        "--cache-root",
        CACHE_MOUNT,
    ]
    document = job_commands.job_document(
        job("uv-job"), docker, interpreter="python3.11", base_path="/usr/local/bin:/usr/bin:/bin", worker_env={}
    )
    assert document["install"]["tool"] == "uv" and document["working_directory"] == ""
    assert "sandbox" not in document


def test_the_jobs_working_directory_is_where_the_install_runs(tmp_path):
    """job.json names it; ci_step.py's venv step runs the install there, a missing one fails naming it."""
    pipeline = load_pipeline(
        "version: 1\njobs:\n  api: {working_directory: backend, install: {uv: {}}, steps: [pytest]}\n", "f.yml"
    )
    spec = job_of(pipeline, "api")
    checkout = tmp_path / "build"
    checkout.mkdir()
    job_dir = tmp_path / ".namaskah-ci"
    job_dir.mkdir()
    document = job_commands.job_document(
        spec, layout(job_dir), interpreter=sys.executable, base_path="/usr/bin:/bin", worker_env={}
    )
    assert document["working_directory"] == "backend"
    (job_dir / "job.json").write_text(json.dumps(document))
    argv = job_commands.venv_argv(layout(job_dir), spec, sys.executable)
    done = subprocess.run(argv, cwd=checkout, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert "working_directory backend/: no such directory in the checkout" in done.stderr
