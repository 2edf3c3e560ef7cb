"""Helpers for tests of a master run the way `make up` / `make down` run it (scripts/master_ctl.sh):
a settings file on free ports, a scratch repository with a given pipeline file, the daemonized
master's pid, bounded REST waits, and a cleanup that leaves no master behind.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from harness import ROOT, free_port, git, wait_for

CTL = str(ROOT / "scripts" / "master_ctl.sh")
T = TypeVar("T")


def ctl(action: str, tmp: Path, config: Path | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    """`scripts/master_ctl.sh <action>` as a user types it (no PIPELINE_* variables but the config)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")}
    env.update(PY=sys.executable, MASTER_POINTER=str(tmp / "master.pointer"))
    if config:
        env["PIPELINE_CONFIG"] = str(config)
    return subprocess.run([CTL, action], capture_output=True, text=True, timeout=timeout, env=env, check=False)


def scratch_repo(path: Path, pipeline: str) -> Path:
    """A git repository on `main` holding only `.namaskah-ci.yml` = `pipeline`."""
    path.mkdir(parents=True)
    (path / ".namaskah-ci.yml").write_text(pipeline)
    git(path, "init", "-q", "-b", "main")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "pipeline")
    return path


def write_config(tmp: Path, repo: Path, extra: str = "") -> tuple[Path, int]:
    """Settings for a master in `tmp/master` building `repo` (its first run builds main once; jobs
    run as the master's user, with `[workers] max_jobs = 1`); returns (path, www port)."""
    port = free_port()
    config = tmp / "pipeline.toml"
    config.write_text(
        f'[master]\nbasedir = "{tmp / "master"}"\n'
        f"[www]\nport = {port}\n"
        f'[workers]\nport = {free_port()}\njob_user = ""\nmax_jobs = 1\n'
        f'[repo]\nurl = "{repo}"\npoll_interval = 3600\n'
        f'[secrets]\ndir = "{tmp / "secrets"}"\n{extra}'
    )
    return config, port


def master_pid(basedir: Path) -> int | None:
    try:
        return int((basedir / "twistd.pid").read_text().strip())
    except (OSError, ValueError):
        return None


def alive(pid: int | None) -> bool:
    """The process exists and is not a zombie (None, a master that wrote no pid: nothing is)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def kill_master(basedir: Path, pid: int | None = None) -> None:
    """Cleanup: SIGKILL the master's process group if it is still there (a failed test's master)."""
    pid = pid or master_pid(basedir)
    if pid and alive(pid) and Path(f"/proc/{pid}/cwd").resolve() == basedir.resolve():
        os.killpg(os.getpgid(pid), signal.SIGKILL)


def api(port: int, path: str, timeout: float = 10) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/{path}", timeout=timeout) as response:
        return json.loads(response.read())


def builds(port: int, **filters: str) -> list[dict]:
    query = "&".join(f"{key}={value}" for key, value in filters.items())
    return api(port, "builds" + (f"?{query}" if query else ""))["builds"]


def builder_id(port: int, name: str) -> int:
    return wait_for(
        f"builder {name}", lambda: {b["name"]: b["builderid"] for b in api(port, "builders")["builders"]}.get(name), 60
    )


def timed(call: Callable[[], T]) -> tuple[T, float]:
    start = time.monotonic()
    result = call()
    return result, time.monotonic() - start
