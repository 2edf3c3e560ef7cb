"""`make up` / `make down` / `make status` (scripts/master_ctl.sh) on a real master.

A master started with PIPELINE_CONFIG is found by `status` and `down` run without it (as a new user
types them), and a pidfile left by a crash whose pid now belongs to another process does not make
`up` believe the master is running.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from harness import ROOT, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]
CTL = str(ROOT / "scripts" / "master_ctl.sh")


def ctl(action: str, tmp, config=None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")}
    env.update(PY=sys.executable, MASTER_POINTER=str(tmp / "master.pointer"))
    if config:
        env["PIPELINE_CONFIG"] = str(config)
    return subprocess.run([CTL, action], capture_output=True, text=True, timeout=240, env=env)


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
