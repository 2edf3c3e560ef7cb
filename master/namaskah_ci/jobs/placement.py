"""Which worker a job build gets (a job builder's `nextWorker` and `canStartBuild`).

- A reused build (`reuse.is_reused`: nothing runs) goes to the master's `reuse`
  worker, every other build to one of the builder's own workers, and only while
  fewer than `[workers] max_jobs` job builds are started (`JobSlots`; Buildbot
  marks a worker busy synchronously when it starts a build there, before it
  looks at the next request, so the count is exact and no build starts only to
  wait; the `job-slots` lock of `builders.JobLocks` stays as a second guard).
  Starting docker builds ahead, so that their containers get ready while
  others run, was measured slower on two vCPUs (67.8 s against 58.2 s a
  pipeline): a container's start costs CPU the running jobs need.
- Docker mode with several engines (`[workers] extra_docker_hosts`): among the
  free workers, those on the engine running the fewest of this master's job
  builds, so jobs spread across the engines. An engine that fails a build's
  start puts that worker in Buildbot's quarantine (10 s, doubling), so while
  an engine is stopped its builds are retried on the others.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable
from typing import Any

from namaskah_ci import names
from namaskah_ci.jobs.reuse import is_reused


def _on_reuse_worker(workerforbuilder: Any) -> bool:
    workername: str = workerforbuilder.worker.workername
    return workername == names.REUSE_WORKER


def engine_of(worker: Any) -> str | None:
    """The Docker engine of a docker-mode job worker (None for a local worker)."""
    return getattr(worker, "docker_host", None)


def engine_load(workers: Iterable[Any]) -> Counter[str | None]:
    """{engine: job builds of this master starting or running there}."""
    load: Counter[str | None] = Counter()
    for worker in workers:
        engine = engine_of(worker)
        if engine is not None:
            load[engine] += sum(1 for wfb in worker.workerforbuilders.values() if wfb.isBusy())
    return load


def select_worker(builder: Any, workers: list[Any], request: Any) -> Any:
    """A job builder's nextWorker (see the module docstring); None: none of them fits."""
    wanted = [wfb for wfb in workers if _on_reuse_worker(wfb) == is_reused(request)]
    if len({engine_of(wfb.worker) for wfb in wanted}) > 1:
        load = engine_load(builder.master.workers.workers.values())  # the WorkerManager: every worker
        least = min(load[engine_of(wfb.worker)] for wfb in wanted)
        wanted = [wfb for wfb in wanted if load[engine_of(wfb.worker)] == least]
    return random.choice(wanted) if wanted else None


def started_jobs(workers: Iterable[Any], job_builders: frozenset[str]) -> int:
    """Job builds started (preparing, waiting or running) on the job builders' own workers."""
    return sum(
        1
        for worker in workers
        if worker.workername != names.REUSE_WORKER
        for name, wfb in worker.workerforbuilders.items()
        if name in job_builders and wfb.isBusy()
    )


class JobSlots:
    """A job builder's canStartBuild: the right worker for the request, and a free job slot."""

    def __init__(self, slots: int, job_builders: Iterable[str]):
        self.slots = slots
        self.job_builders = frozenset(job_builders)

    def __call__(self, builder: Any, workerforbuilder: Any, request: Any) -> bool:
        if _on_reuse_worker(workerforbuilder) != is_reused(request):
            return False
        if is_reused(request):
            return True
        return started_jobs(builder.master.workers.workers.values(), self.job_builders) < self.slots

    def __eq__(self, other: object) -> bool:
        return isinstance(other, JobSlots) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def _key(self) -> tuple[int, frozenset[str]]:
        return self.slots, self.job_builders
