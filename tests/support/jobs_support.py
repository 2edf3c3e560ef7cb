"""Shared by tests that run jobs' processes for real: the job user, a Python it can run, a directory it
may enter."""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

JOB_USER = "namaskah-job"  # the user scripts/create_job_user.sh makes and `make up` runs jobs as


def job_python() -> str:
    """A Python 3.11 the job user can run (a pyenv under /root is private to root)."""
    system = Path("/usr/bin/python3.11")
    return str(system) if system.exists() else shutil.which("python3.11") or sys.executable


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A directory every user may enter (not list), removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="namaskah-job-user-", dir="/tmp"))
    path.chmod(0o711)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
