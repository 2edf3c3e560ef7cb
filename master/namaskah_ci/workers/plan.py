"""Where jobs run, whatever the worker mode: the `WorkerPlan` the builders and steps read, and how many
builds run at once (job slots per engine or machine, pipeline slots). Pure functions of the settings."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from buildbot.plugins import worker

from namaskah_ci.helpers import HELPERS_DIR
from namaskah_ci.names import PIPELINE, REUSE_WORKER, docker_worker_name, worker_name
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
    hosts: int = 1  # Docker hosts: `slots` workers per job builder on each
    slots: int = 1  # workers per job builder (per host): how many of its builds may run at once
    base_env: tuple[
        tuple[str, str], ...
    ] = ()  # (name, value) pairs: every job's base environment on this kind of worker
    known_pythons: tuple[str, ...] | None = None  # versions with a worker image (None: any interpreter on the host)
    # local mode: job commands run under `nice` so the master (same host, same CPUs) stays responsive
    nice_commands: bool = False
    job_user: str = ""  # local mode, master running as root: the user the jobs' commands run as
    docker_socket_branches: tuple[str, ...] = ()  # both modes: branches whose `tools: [docker]` jobs get the engine

    def job_workers(self, builder: str) -> list[str]:
        """The workers a check builder runs on."""
        if self.mode == "docker":
            return [
                docker_worker_name(builder, index, slot) for slot in range(self.slots) for index in range(self.hosts)
            ]
        return [worker_name(builder, slot) for slot in range(self.slots)]


def cores() -> int:
    return os.cpu_count() or 1


def engine_jobs(settings: Settings) -> int:
    """Docker mode: job builds each engine runs at once."""
    return settings.workers.engine_jobs or cores()


def job_slots(settings: Settings) -> int:
    """Job builds running at once across every pipeline and branch (`[workers] max_jobs`; 0: local mode
    the machine's cores, docker mode engines x `engine_jobs`); `builders.JobLocks` holds it."""
    if settings.workers.max_jobs:
        return settings.workers.max_jobs
    if settings.workers.mode == "docker":
        return (1 + len(settings.workers.extra_docker_hosts)) * engine_jobs(settings)
    return cores()


def builder_slots(settings: Settings) -> int:
    """Workers each job builder has (on each engine): one builder may use every slot."""
    if settings.workers.mode == "docker":
        return min(engine_jobs(settings), job_slots(settings))
    return job_slots(settings)


def pipeline_slots(settings: Settings) -> int:
    """Pipeline builds at once: they only wait on their jobs, so more than the job slots keeps those busy."""
    return settings.pipeline.max_pipelines or max(4, 2 * job_slots(settings))


def pipeline_workers(settings: Settings) -> list[str]:
    return [worker_name(PIPELINE, slot) for slot in range(pipeline_slots(settings))]


def reuse_worker() -> Any:
    """The master-side worker of reused job builds: they only link to the earlier build (jobs/reuse.py)."""
    return worker.LocalWorker(REUSE_WORKER, max_builds=None)
