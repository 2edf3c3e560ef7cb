"""Workers: one LocalWorker per builder in local mode; containers in docker mode (docker_config.py).

Local mode runs every build on the master's host. Helper scripts run with the
master's own Python (3.11+, stdlib only); each job's virtualenv is created with
the interpreter `[workers] interpreters` names for its Python version, found on
the PATH or under pyenv. A missing interpreter is reported by the job's
virtualenv step, naming what to install.
"""

from __future__ import annotations

import functools
import glob
import os
import subprocess
import sys
from dataclasses import dataclass

from buildbot.plugins import worker

from namaskah_ci.settings import Settings


@dataclass(frozen=True)
class WorkerPlan:
    """What the factories need to know about where a job runs."""

    runner: str  # runs the repository's helper scripts
    cache_root: str  # pip caches (one per Python version) and the shared virtualenvs
    # docker mode (docker_config.make_docker_plan):
    mode: str = "local"
    interpreter: str = ""  # creates job virtualenvs; empty: resolve_interpreter() on this host
    require_tools: tuple[str, ...] = ()  # replaces `runner scripts/ci_require_tools.py`
    services_in_worker: bool = False  # the worker starts PostgreSQL/Redis, not StartServices steps
    hosts: int = 1  # Docker hosts: one worker per check builder on each
    # local mode: job commands run under `nice` so the master (same host, same CPUs) stays responsive
    nice_commands: bool = False

    def job_workers(self, builder: str) -> list[str]:
        """The workers a check builder runs on."""
        if self.mode == "docker":
            return [docker_worker_name(builder, index) for index in range(self.hosts)]
        return [worker_name(builder)]


def worker_name(builder: str) -> str:
    """Worker names must be identifiers: `local-test-py3_9` for `test-py3.9`."""
    return "local-" + builder.replace(".", "_")


@functools.lru_cache(maxsize=None)
def _usable(candidate: str) -> bool:
    """The interpreter runs and can create virtualenvs (Debian splits venv/ensurepip out)."""
    try:
        probe = subprocess.run([candidate, "-c", "import venv, ensurepip"], capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


def interpreter_candidates(name: str, version: str) -> list[str]:
    """PATH entries first (pyenv shims skipped: they fail outside a selected version), then pyenv installs."""
    found = []
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        path = os.path.join(directory, name)
        if directory.rstrip("/").endswith("/shims") or not os.access(path, os.X_OK) or os.path.isdir(path):
            continue
        found.append(path)
    if os.path.isabs(name):
        found.insert(0, name)
    pyenv_root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    found += sorted(glob.glob(os.path.join(pyenv_root, "versions", f"{version}.*", "bin", f"python{version}")))[::-1]
    return found


def docker_worker_name(builder: str, host_index: int = 0) -> str:
    """`docker-test-py3_9` on the first Docker host, `docker-test-py3_9-h2` on the second."""
    base = "docker-" + builder.replace(".", "_")
    return base if host_index == 0 else f"{base}-h{host_index + 1}"


def resolve_interpreter(settings: Settings, version: str) -> str:
    """The interpreter for a Python version; the bare name (the job then fails naming it) if none works."""
    name = settings.workers.interpreters.get(version, f"python{version}")
    for candidate in interpreter_candidates(name, version):
        if _usable(candidate):
            return candidate
    return name


def make_plan(settings: Settings) -> WorkerPlan:
    if settings.workers.mode == "docker":
        from namaskah_ci.docker_config import make_docker_plan

        return make_docker_plan(settings)
    return WorkerPlan(runner=sys.executable, cache_root=str(settings.cache_dir), nice_commands=True)


def make_workers(settings: Settings, builder_names: list[str]) -> list:
    """A fresh list of workers: one per builder (docker mode: containers for the check builders)."""
    if settings.workers.mode == "docker":
        from namaskah_ci.docker_config import make_docker_workers

        return make_docker_workers(settings, builder_names)
    return [worker.LocalWorker(worker_name(name)) for name in builder_names]
