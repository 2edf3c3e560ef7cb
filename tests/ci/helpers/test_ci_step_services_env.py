"""A job's commands get their service URLs from the job directory's services.env, never from the master.

Local mode: `ci_services.py start --env-file <job dir>/services.env` writes DATABASE_URL and REDIS_URL
(passwords and all, 0600) and `ci_step.py` hands them to each command; the master holds them nowhere
(no property, no step `env`, so not in twistd.log either). Docker mode: they are in the worker
container's environment. Real helper processes (`ci_step.py run -- env`, no sandbox) and the helper's
`job_environment` (a sandboxed job's document).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from namaskah_ci.helpers import HELPERS_DIR
from namaskah_ci.helpers.ci_step import job_environment
from namaskah_ci.jobs import commands as job_commands
from namaskah_ci.pipeline.model import load_pipeline
from pipeline_support import job_of

JOB = job_of(
    load_pipeline(
        "version: 1\njobs:\n  api:\n    requirements: []\n    services: [postgres, redis]\n    steps: [env]\n",
        ".namaskah-ci.yml",
    ),
    "api",
)
URLS = {
    "DATABASE_URL": "postgresql://namaskah:pg-5ecret@127.0.0.1:5999/namaskah",
    "REDIS_URL": "redis://default:redis-5ecret@127.0.0.1:6999/0",
}
MASTERS = {"DATABASE_URL": "postgresql://master:theirs@db/master", "REDIS_URL": "redis://master-cache/0"}


def job_dir(tmp_path: Path, sandbox: bool, services: dict | None) -> Path:
    directory = tmp_path / ".namaskah-ci"
    tmp_path.mkdir(exist_ok=True)
    layout = job_commands.JobLayout(
        runner=sys.executable,
        helpers_dir=HELPERS_DIR,
        cache_root=str(tmp_path / "c"),
        job_dir=str(directory),
        sandbox=sandbox,
    )
    document = job_commands.job_document(
        JOB, layout, interpreter=sys.executable, base_path="/usr/bin:/bin", worker_env={}, branch="main"
    )
    directory.mkdir()
    (directory / "job.json").write_text(json.dumps(document))
    if services is not None:
        path = directory / job_commands.SERVICES_FILE
        path.write_text("".join(f"{key}={value}\n" for key, value in services.items()))
        path.chmod(0o600)
    return directory


def test_the_services_start_writes_where_the_commands_read():
    layout = job_commands.JobLayout(runner="py", helpers_dir="/h", cache_root="/c")
    argv = job_commands.services_argv(layout, "start", "../services", JOB)
    assert argv[argv.index("--env-file") + 1] == f"../.namaskah-ci/{job_commands.SERVICES_FILE}"


def test_a_command_gets_the_urls_of_its_services_file_over_the_workers(tmp_path):
    directory = job_dir(tmp_path, sandbox=False, services=URLS)
    argv = [sys.executable, f"{HELPERS_DIR}/ci_step.py", "--job-dir", str(directory), "run", "--", "env"]
    done = subprocess.run(
        argv, env={"PATH": "/usr/bin:/bin", **MASTERS}, capture_output=True, text=True, timeout=30, check=True
    )
    env = dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)
    assert {key: env.get(key) for key in URLS} == URLS


def test_a_docker_worker_containers_urls_are_passed_on_but_never_the_masters_into_a_sandbox(tmp_path):
    """Docker mode (no sandbox): the worker container's environment holds the URLs. Local mode: a
    command's environment is the job's, and its service URLs come from its file only."""
    plain = job_dir(tmp_path / "docker", sandbox=False, services=None)
    env = job_environment(str(plain), json.loads((plain / "job.json").read_text()), dict(URLS))
    assert {key: env.get(key) for key in URLS} == URLS
    boxed = job_dir(tmp_path / "local", sandbox=True, services={"DATABASE_URL": URLS["DATABASE_URL"]})
    env = job_environment(str(boxed), json.loads((boxed / "job.json").read_text()), dict(MASTERS))
    assert env.get("DATABASE_URL") == URLS["DATABASE_URL"] and "REDIS_URL" not in env
