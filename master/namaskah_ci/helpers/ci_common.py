#!/usr/bin/env python3
"""What several helpers share: a job secret from the environment, a pinned CLI installed on demand.

Imported by its siblings (ci_codecov.py, ci_safety.py) from their own directory. Stdlib only;
Python 3.9+.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys


def job_secret(tool: str, variable: str, secret: str) -> str | None:
    """The secret the job exports as `variable` (`secrets: [secret]` in the pipeline file), or None, said."""
    value = os.environ.get(variable, "").strip()
    if not value:
        print(f"{tool}: {variable} is not set (list {secret} in the job's secrets)", file=sys.stderr)
        return None
    return value


def ensure_cli(tool: str, program: str, requirement: str) -> int:
    """Install the pinned `requirement` into the current environment when `program` is missing; into
    TMPDIR/ci-tools when that environment is read-only (a local job's cached virtualenv), made
    this process's PATH and PYTHONPATH for the commands it starts."""
    if shutil.which(program) is not None:
        return 0
    command = [sys.executable, "-m", "pip", "install", "-q", requirement]
    if not os.access(sys.prefix, os.W_OK):
        target = os.path.join(os.environ.get("TMPDIR") or "/tmp", "ci-tools")
        command += ["--target", target]
        os.environ["PATH"] = os.pathsep.join((os.path.join(target, "bin"), os.environ.get("PATH", "")))
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (target, os.environ.get("PYTHONPATH")) if p)
    rc = subprocess.run(command, check=False).returncode
    if rc:
        print(f"{tool}: could not install {requirement}", file=sys.stderr)
    return rc
