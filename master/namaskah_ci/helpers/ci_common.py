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
from typing import Optional


def job_secret(tool: str, variable: str, secret: str) -> Optional[str]:
    """The secret the job exports as `variable` (`secrets: [secret]` in the pipeline file), or None, said."""
    value = os.environ.get(variable, "").strip()
    if not value:
        print(f"{tool}: {variable} is not set (list {secret} in the job's secrets)", file=sys.stderr)
        return None
    return value


def ensure_cli(tool: str, program: str, requirement: str) -> int:
    """Install the pinned `requirement` into the current environment when `program` is missing."""
    if shutil.which(program) is not None:
        return 0
    rc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", requirement]).returncode
    if rc:
        print(f"{tool}: could not install {requirement}", file=sys.stderr)
    return rc
