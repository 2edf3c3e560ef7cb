"""`make up` / `make down` / `make status` (scripts/master_ctl.sh) on a real master.

A master started with PIPELINE_CONFIG is found by `status` and `down` run without it (as a new user
types them), and a pidfile left by a crash whose pid now belongs to another process does not make
`up` believe the master is running.

`down` ends the master within 30 s whatever it is doing (issue 21, item 3): a master whose pipeline
waits on a job that runs for ten minutes is asked for a clean shutdown, then after 10 s gets
SIGTERM, and `down` says so; the pipeline ends RETRY (its triggered job CANCELLED) and runs again at
the next `up`. Before, `down` waited for the job (`buildbot stop --clean` waits forever), and a
SIGTERM then made the pipeline CANCELLED: it never ran again. A master that ignores SIGTERM (as one
whose thread pool never joins did) gets SIGKILL with its whole process group after 15 s more.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import time

import pytest

from ctl_support import alive, api, builder_id, builds, ctl, kill_master, master_pid, scratch_repo, timed, write_config
from harness import free_port, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]
STOP_SECONDS = 30
RETRY, CANCELLED = 5, 6
LONG_JOB = "version: 1\nrequirements: []\njobs:\n  long:\n    steps:\n      - sleep 600\n"


def test_down_and_status_find_a_master_started_with_pipeline_config(tmp_path):
    basedir = tmp_path / "master"
    basedir.mkdir()
    unrelated = subprocess.Popen(["sleep", "300"])  # a live process that is not a master
    config = tmp_path / "pipeline.toml"
    config.write_text(
        f'[master]\nbasedir = "{basedir}"\n[www]\nport = {free_port()}\n[workers]\nport = {free_port()}\n'
        f'[repo]\nurl = "{tmp_path / "no-repo"}"\npoll_interval = 3600\n[secrets]\ndir = "{tmp_path / "secrets"}"\n'
    )
    try:
        assert ctl("status", tmp_path, config).returncode == 1
        (basedir / "twistd.pid").write_text(f"{unrelated.pid}\n")  # as a crash and a pid reuse leave it
        up = ctl("up", tmp_path, config)
        assert up.returncode == 0 and "Namaskah CI is up" in up.stdout, up.stdout + up.stderr
        status = ctl("status", tmp_path)
        assert status.returncode == 0 and status.stdout.startswith("running: http://localhost:"), status.stdout
        assert ctl("up", tmp_path, config).stdout.startswith("master already running")
        down = ctl("down", tmp_path)
        assert down.stdout.strip() == "master stopped", down.stdout + down.stderr
        for _ in range(50):
            if not (basedir / "twistd.pid").exists():
                break
            time.sleep(0.2)
        assert ctl("status", tmp_path).stdout.strip() == "not running"
        assert unrelated.poll() is None, "the unrelated process must not have been touched"
    finally:
        ctl("down", tmp_path, config)
        unrelated.kill()


def rows(basedir, query: str) -> list[tuple]:
    connection = sqlite3.connect(f"file:{basedir / 'state.sqlite'}?mode=ro", uri=True, timeout=10)
    try:
        return connection.execute(query).fetchall()
    finally:
        connection.close()


def wait_job_running(port: int, long_id: int, count: int) -> dict:
    """The `count`-th build of the long job, once its `sleep 600` command runs."""

    def running():
        found = builds(port, builderid=str(long_id))
        if len(found) < count or found[-1]["complete"]:
            return None
        steps = api(port, f"builds/{found[-1]['buildid']}/steps")["steps"]
        return found[-1] if any(s["name"] == "sleep 600" and s["started_at"] for s in steps) else None

    return wait_for(f"build {count} of the long job to run its command", running, 300, 1)


def test_down_stops_a_pipeline_waiting_on_a_long_job_within_30s_and_up_runs_it_again(tmp_path):
    config, port = write_config(tmp_path, scratch_repo(tmp_path / "repo", LONG_JOB))
    basedir = tmp_path / "master"
    assert ctl("up", tmp_path, config).returncode == 0
    pid = master_pid(basedir)
    try:
        long_id = builder_id(port, "long")
        wait_job_running(port, long_id, 1)
        down, seconds = timed(lambda: ctl("down", tmp_path, config, timeout=120))
        print(f"down: {seconds:.1f} s: {down.stdout.strip()!r}")
        lines = down.stdout.strip().splitlines()
        assert lines[0].startswith("clean shutdown did not finish in 10 s: sent SIGTERM"), down.stdout + down.stderr
        assert lines[-1] == "master stopped" and not any("SIGKILL" in line for line in lines)
        assert seconds < STOP_SECONDS and not alive(pid)
        pipeline, job = rows(
            basedir,
            "SELECT b.results, r.complete FROM builds b JOIN buildrequests r ON b.buildrequestid = r.id ORDER BY b.id",
        )
        assert pipeline == (RETRY, 0), "the pipeline must end RETRY with its request left to run again"
        assert job == (CANCELLED, 1), "its triggered job is CANCELLED (the retried pipeline triggers it anew)"

        assert ctl("up", tmp_path, config).returncode == 0
        pid = master_pid(basedir)
        wait_job_running(port, long_id, 2)  # the same pipeline request ran again and triggered the job
        (first_request,) = rows(basedir, "SELECT buildrequestid FROM builds ORDER BY id LIMIT 1")
        assert len(rows(basedir, f"SELECT id FROM builds WHERE buildrequestid = {first_request[0]}")) == 2
        down, seconds = timed(lambda: ctl("down", tmp_path, config, timeout=120))
        assert down.stdout.strip().endswith("master stopped") and seconds < STOP_SECONDS, down.stdout
    finally:
        kill_master(basedir, pid)


def test_down_kills_the_process_group_of_a_master_that_ignores_sigterm(tmp_path):
    """A stand-in for a master whose shutdown hangs: a process (and its child) in the basedir that
    ignores SIGUSR1 (clean shutdown) and SIGTERM, recorded in twistd.pid as a master is."""
    basedir = tmp_path / "master"
    basedir.mkdir()
    (basedir / "buildbot.tac").write_text("application = service.Application('buildmaster')\n")
    config = tmp_path / "pipeline.toml"
    config.write_text(
        f'[master]\nbasedir = "{basedir}"\n[www]\nport = {free_port()}\n[workers]\nport = {free_port()}\n'
        f'[repo]\nurl = "{tmp_path / "no-repo"}"\npoll_interval = 3600\n[secrets]\ndir = "{tmp_path / "secrets"}"\n'
    )
    stubborn = subprocess.Popen(
        ["sh", "-c", 'trap "" TERM USR1; sleep 300 & echo $! > child; exec sleep 300'],
        cwd=basedir,
        start_new_session=True,
    )
    try:
        (basedir / "twistd.pid").write_text(f"{stubborn.pid}\n")
        child = int(wait_for("the stand-in's child", lambda: (basedir / "child").read_text().strip(), 10, 0.1))
        down, seconds = timed(lambda: ctl("down", tmp_path, config, timeout=120))
        print(f"down: {seconds:.1f} s: {down.stdout.strip()!r}")
        assert down.stdout.splitlines() == [
            "clean shutdown did not finish in 10 s: sent SIGTERM (running builds end RETRY and run again at the"
            " next start)",
            f"SIGTERM did not stop the master in 15 s: sent SIGKILL to its process group {stubborn.pid}",
            "master stopped",
        ], down.stdout + down.stderr
        assert seconds < STOP_SECONDS
        stubborn.wait(timeout=10)
        wait_for("the stand-in's child to die with its group", lambda: not alive(child), 10, 0.1)
        assert not (basedir / "twistd.pid").exists()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(stubborn.pid, signal.SIGKILL)  # the stand-in and its child, if `down` failed
        stubborn.wait(timeout=10)
