"""`make up` / `make status` (scripts/master_ctl.sh) and where the master's state lives (issue 23, items 1,
2 and 8), on one real master.

Before issue 23 the master's directory was `.state/master` inside this checkout (its job directories
under this repository's pyproject.toml, mypy.ini, .git ...), and `make status` printed the address of the
settings it was run with: `localhost:8010` for a master started with `PIPELINE_WWW_PORT=8031`. Now the
default basedir is outside the checkout (`$XDG_STATE_HOME/namaskah-ci/<checkout>-<hash>` here), `up`
moves a master directory left at the old default there, database included, saying so in one line, and
`status` prints the address the running master serves, recorded in its basedir at `up`.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from ctl_support import CTL, api, kill_master, scratch_repo
from harness import ROOT, free_port
from namaskah_ci import workdirs

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(400)]
MARKER = ("issue-23-marker", "kept by the move")


def ctl(action: str, tmp: Path, **env: str) -> subprocess.CompletedProcess:
    """`scripts/master_ctl.sh <action>` with this test's state root, old default and pointer, and `env`."""
    run_env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")}
    run_env.update(
        PY=sys.executable,
        XDG_STATE_HOME=str(tmp / "state"),
        MASTER_LEGACY_BASEDIR=str(tmp / "checkout" / ".state" / "master"),
        MASTER_POINTER=str(tmp / "master.pointer"),
        PIPELINE_CONFIG=str(tmp / "pipeline.toml"),
        **env,
    )
    return subprocess.run([CTL, action], capture_output=True, text=True, timeout=240, env=run_env, check=False)


def old_master(legacy: Path) -> None:
    """A master directory as `make up` made it at the old default, its database holding a marker row."""
    legacy.parent.mkdir(parents=True)
    subprocess.run(
        [
            str(Path(sys.executable).parent / "buildbot"),
            "create-master",
            "-q",
            "-r",
            f"--config={ROOT / 'master' / 'master.cfg'}",
            f"--db=sqlite:///{legacy / 'state.sqlite'}",
            str(legacy),
        ],
        check=True,
        capture_output=True,
        timeout=120,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")}, "TZ": "UTC"},
    )
    with sqlite3.connect(legacy / "state.sqlite") as connection:
        connection.execute("INSERT INTO objects (name, class_name) VALUES (?, ?)", MARKER)


def test_up_moves_the_old_master_directory_out_and_status_prints_the_address_it_serves(tmp_path):
    repo = scratch_repo(tmp_path / "repo", "version: 1\nrequirements: []\njobs:\n  one:\n    steps: ['true']\n")
    legacy = tmp_path / "checkout" / ".state" / "master"
    old_master(legacy)
    settings_port, served_port = free_port(), free_port()
    (tmp_path / "pipeline.toml").write_text(  # no [master] basedir: the default
        f'[www]\nport = {settings_port}\n[workers]\nport = {free_port()}\njob_user = ""\n'
        f'[repo]\nurl = "{repo}"\npoll_interval = 3600\n[pipeline]\nfirst_run = false\n'
        f'[secrets]\ndir = "{tmp_path / "secrets"}"\n'
    )
    basedir = workdirs.default_basedir(ROOT, {"XDG_STATE_HOME": str(tmp_path / "state")})
    try:
        up = ctl("up", tmp_path, PIPELINE_WWW_PORT=str(served_port))  # the port only in up's environment
        assert up.returncode == 0, up.stdout + up.stderr
        lines = up.stdout.splitlines()
        assert lines[0] == (
            f"moved the master directory {legacy} to {basedir} (job directories must be outside any project; "
            "virtualenvs are rebuilt)"
        ), up.stdout
        assert lines[-1] == f"Namaskah CI is up: http://localhost:{served_port}/  (logs: {basedir}/twistd.log)"
        assert not legacy.exists() and (basedir / "buildbot.tac").is_file()
        with sqlite3.connect(f"file:{basedir / 'state.sqlite'}?mode=ro", uri=True) as connection:
            assert connection.execute("SELECT name, class_name FROM objects WHERE name = ?", MARKER[:1]).fetchall() == [
                MARKER
            ]
        assert api(served_port, "builders")["builders"]
        status = ctl("status", tmp_path)  # as typed later, without the variable
        assert (status.returncode, status.stdout) == (0, f"running: http://localhost:{served_port}/\n"), status
        again = ctl("up", tmp_path)
        assert again.stdout == f"master already running: http://localhost:{served_port}/\n", again
        down = ctl("down", tmp_path)
        assert down.stdout.strip().endswith("master stopped"), down.stdout + down.stderr
        assert ctl("status", tmp_path).stdout == "not running\n"
    finally:
        kill_master(basedir)


def test_up_says_what_to_do_when_both_the_old_and_the_new_directory_hold_a_master(tmp_path):
    legacy = tmp_path / "checkout" / ".state" / "master"
    old_master(legacy)
    basedir = workdirs.default_basedir(ROOT, {"XDG_STATE_HOME": str(tmp_path / "state")})
    basedir.mkdir(parents=True)
    (basedir / "state.sqlite").write_bytes(b"")
    (tmp_path / "pipeline.toml").write_text(f'[secrets]\ndir = "{tmp_path / "secrets"}"\n')
    up = ctl("up", tmp_path)
    assert up.returncode == 1 and up.stdout == "", up.stdout + up.stderr
    assert up.stderr.splitlines() == [
        f"the master directory {legacy} (the old default, inside this checkout) was not moved: {basedir} exists "
        f"too; keep one: 'mv {legacy} {basedir}' after moving {basedir} away, or remove {legacy}, then make up"
    ]
    assert (legacy / "state.sqlite").stat().st_size > 0 and (basedir / "state.sqlite").exists()
