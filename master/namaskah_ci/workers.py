"""Workers: one LocalWorker per builder in local mode; containers in docker mode (docker_config.py).

Local mode runs every build on the master's host. Namaskah CI's helpers run
with the master's own Python from the master's package (`helpers/`); each
job's virtualenv is created with the interpreter `[workers] interpreters`
names for its Python version, found on the PATH or under pyenv
(`hostenv.py`). A missing interpreter is reported by the job's virtualenv
step, naming what to install.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from buildbot.plugins import worker

from namaskah_ci.helpers import HELPERS_DIR
from namaskah_ci.hostenv import host_ca_env, interpreter_candidates, resolve_interpreter  # noqa: F401
from namaskah_ci.names import docker_worker_name, worker_name
from namaskah_ci.settings import Settings


@dataclass(frozen=True)
class WorkerPlan:
    """What the job builds need to know about where a job runs."""

    runner: str  # the Python that runs Namaskah CI's helpers on the worker
    cache_root: str  # pip caches (one per Python version) and the shared virtualenvs
    helpers_dir: str = HELPERS_DIR  # the helpers on the worker (local: the master's own copy)
    # docker mode (docker_config.make_docker_plan):
    mode: str = "local"
    transfer_helpers: bool = False  # copied into each build's job directory
    services_in_worker: bool = False  # the worker starts PostgreSQL/Redis, not StartServices steps
    hosts: int = 1  # Docker hosts: one worker per job builder on each
    base_env: tuple = ()  # (name, value) pairs: every job's base environment on this kind of worker
    known_pythons: tuple | None = None  # versions with a worker image (None: any interpreter on the host)
    # local mode: job commands run under `nice` so the master (same host, same CPUs) stays responsive
    nice_commands: bool = False

    def job_workers(self, builder: str) -> list[str]:
        """The workers a check builder runs on."""
        if self.mode == "docker":
            return [docker_worker_name(builder, index) for index in range(self.hosts)]
        return [worker_name(builder)]


def make_plan(settings: Settings) -> WorkerPlan:
    if settings.workers.mode == "docker":
        from namaskah_ci.docker_config import make_docker_plan

        return make_docker_plan(settings)
    return WorkerPlan(
        runner=sys.executable, cache_root=str(settings.cache_dir), nice_commands=True, base_env=host_ca_env()
    )


def make_workers(settings: Settings, builder_names: list[str], registry) -> list:
    """A fresh list of workers: one per builder (docker mode: containers for the job builders)."""
    if settings.workers.mode == "docker":
        from namaskah_ci.docker_config import make_docker_workers

        return make_docker_workers(settings, builder_names, registry)
    return [worker.LocalWorker(worker_name(name)) for name in builder_names]
