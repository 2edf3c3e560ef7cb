"""Local mode keeps jobs off the Docker engine (its socket is root on the host), and says so.

A job's commands run in the bubblewrap sandbox as the job user, with no group: the socket that
`tools: [docker]` mounts answers "permission denied", and `ci_require_tools.py docker` names that,
the job user and docker mode, instead of "start dockerd". Real bwrap, real engine socket, real job
user (skipped, saying why, without them); the message itself also against a stand-in `docker`.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from namaskah_ci.helpers import HELPERS_DIR
from namaskah_ci.helpers.ci_sandbox import DOCKER_SOCKETS, sandbox_argv

TOOLS = str(Path(HELPERS_DIR) / "ci_require_tools.py")
USER = "namaskah-job"


def test_a_refused_socket_is_named_with_the_job_user_and_docker_mode(tmp_path: Path) -> None:
    docker = tmp_path / "bin" / "docker"
    docker.parent.mkdir()
    docker.write_text(
        "#!/bin/sh\necho 'permission denied while trying to connect to the Docker daemon socket at "
        "unix:///var/run/docker.sock: connect: permission denied' >&2\nexit 1\n"
    )
    docker.chmod(0o755)
    done = subprocess.run([sys.executable, TOOLS, "docker"], capture_output=True, text=True, timeout=60,
                          env={"PATH": str(docker.parent)})
    assert done.returncode == 1
    [line] = done.stderr.splitlines()
    assert line.startswith("missing tool: docker: this job may not use the Docker engine (permission denied")
    assert "[workers] job_user" in line and "docker mode" in line and "start dockerd" not in line


def test_the_job_user_in_its_sandbox_cannot_use_the_engine() -> None:
    if os.geteuid() != 0:
        pytest.skip("the job user and its sandbox are set up by root")
    bwrap, setpriv = shutil.which("bwrap"), shutil.which("setpriv")
    docker = shutil.which("docker")
    if not (bwrap and setpriv and docker):
        pytest.skip("needs bwrap, setpriv and the docker client")
    if not any(os.path.exists(path) for path in DOCKER_SOCKETS):
        pytest.skip("no Docker engine socket on this host")
    try:
        user = pwd.getpwnam(USER)
    except KeyError:
        pytest.skip(f"no {USER} user: scripts/create_job_user.sh")
    python = shutil.which("python3", path="/usr/bin:/bin")  # the helpers are stdlib only
    if not python:
        pytest.skip("no /usr/bin/python3")
    argv = sandbox_argv(bwrap, workdir="/tmp", writable=[], readonly=[os.path.dirname(docker), HELPERS_DIR],
                        tools=["docker"], as_root=True, switch_to=(setpriv, user.pw_uid, user.pw_gid))
    done = subprocess.run(argv + [python, TOOLS, "docker"], capture_output=True, text=True, timeout=120,
                          env={"PATH": f"{os.path.dirname(docker)}:/usr/bin:/bin"})
    assert done.returncode == 1, done.stdout + done.stderr
    assert "this job may not use the Docker engine (permission denied" in done.stderr, done.stderr
