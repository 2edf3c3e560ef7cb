"""Worker faults in local mode: a job's command killed mid-build (`kill -9`, as the out-of-memory killer
does) ends the build within a bounded time with the reason in its summary, and leaks nothing: the
job's PostgreSQL and Redis are stopped, their data directories removed, the job's TMPDIR emptied.

A real master on a scratch repository whose pipeline file has one job with both services and a step
that sleeps; the test kills that step's process (found by a marker in its command line), notes the
job's servers (their pids and directories, from the job's `ci_services.py` state file: other tests'
servers may come and go meanwhile) and checks they are gone and the TMPDIR empty afterwards.
"""

from __future__ import annotations

import glob
import json
import os
import secrets as pysecrets
import signal
import time
from pathlib import Path

import pytest

from harness import commit_file, git, start_master, wait_for, wait_poller_ready

pytestmark = [pytest.mark.e2e, pytest.mark.reliability, pytest.mark.timeout(600)]
MARKER = f"namaskah-fault-{pysecrets.token_hex(4)}"
PIPELINE = f"""version: 1
jobs:
  slow:
    requirements: []
    services: [postgres, redis]
    steps:
      - name: sleeps
        run: "echo started; exec -a {MARKER} sleep 300"
"""


def processes(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def job_tmp_entries(basedir: Path) -> int:
    return sum(len(os.listdir(d)) for d in glob.glob(str(basedir / "workers/*/*/.namaskah-ci/tmp")))


def job_servers(basedir: Path) -> dict[str, tuple[int, str]]:
    """{"postgres" | "redis": (pid, directory)} of this master's jobs' running servers, from the state
    files `ci_services.py start` writes in each job's state directory."""
    found = {}
    for path in glob.glob(str(basedir / "workers" / "**" / "state.json"), recursive=True):
        state = json.loads(Path(path).read_text())
        for name, pidfile in (("postgres", "data/postmaster.pid"), ("redis", "redis.pid")):
            if name in state:
                root = state[name]["root"]
                found[name] = (int((Path(root) / pidfile).read_text().split()[0]), root)
    return found


def gone(servers: dict[str, tuple[int, str]]) -> bool:
    return not any(Path(f"/proc/{pid}").exists() or Path(root).exists() for pid, root in servers.values())


def test_a_killed_job_command_ends_the_build_saying_so_and_leaks_nothing(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    commit_file(repo, "README", "faults\n", "initial")
    master = start_master(tmp_path, repo, seed=False)
    try:
        wait_poller_ready(master)
        tmp_before = job_tmp_entries(master.basedir)
        revision = commit_file(repo, ".namaskah-ci.yml", PIPELINE, "ci: a job that sleeps")
        victims = wait_for("the job's command to run", lambda: processes(MARKER), 300, 0.2)
        servers = job_servers(master.basedir)
        assert set(servers) == {"postgres", "redis"}, servers
        assert all(Path(f"/proc/{pid}").exists() for pid, _ in servers.values()), servers
        killed_at = time.monotonic()
        killed = 0
        for pid in victims:  # the marker is in the sandbox's and ci_step's command lines too:
            try:  # killing one of those takes the rest with it before the loop reaches them
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                continue
        assert killed, victims

        def finished():
            builds = [
                b for b in master.finished_builds("slow") if b["properties"].get("revision", [None])[0] == revision
            ]
            return builds[0] if builds else None

        build = wait_for("the killed build to end", finished, 120, 0.5)
        ended_after = time.monotonic() - killed_at
        assert build["results"] == 2, build["state_string"]
        assert "sleeps: killed by a signal" in build["state_string"], build["state_string"]
        steps = {s["name"]: s for s in master.steps(build)}
        assert steps["stop services"]["results"] == 0  # ran although the step before was killed
        assert ended_after < 60, ended_after
        wait_for("the job's servers and their directories to go", lambda: gone(servers), 30, 0.5)
        wait_for("the job's TMPDIR to be emptied", lambda: job_tmp_entries(master.basedir) == tmp_before, 30, 0.5)
    finally:
        master.stop()
