"""A job checkout under /var/lib (a root master's default basedir, /var/lib/namaskah-ci/..., issue 23) is
reachable by the job user inside the sandbox.

bwrap makes the parents of what it binds private to the user setting the sandbox up: binding
/var/lib/dpkg (a system tree) left /var 0700 root, and every command of a job under /var/lib failed as
the job user (pytest: "PermissionError: ... build/pytest.ini"). `system_args()` now makes them 0755.
Real bwrap, as root, with an unprivileged uid; skipped, saying why, otherwise.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from namaskah_ci.helpers.ci_sandbox import system_args

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("bwrap") or not os.path.isdir("/var/lib/dpkg"),
    reason="needs root, bwrap and /var/lib/dpkg (a system tree under /var/lib)",
)


def test_var_and_var_lib_are_enterable_by_the_job_user_in_the_sandbox():
    args = ["bwrap", *system_args(), "--proc", "/proc", "--dev", "/dev", "--"]
    command = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", "stat", "-c", "%a", "/var/lib"]
    done = subprocess.run(args + command, capture_output=True, text=True, timeout=60, check=False)
    assert (done.returncode, done.stdout, done.stderr) == (0, "755\n", "")
