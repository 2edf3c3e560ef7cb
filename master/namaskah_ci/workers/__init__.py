"""Workers: local workers in the master (`local.py`) or Docker latent workers with per-build services
(`docker/`), chosen by `[workers] mode`; `plan.py` says where jobs run and how many at once.

`make_plan(settings)` and `make_workers(settings, builder_names, registry)` are the two entry points
(config.py); each dispatches to the mode's module.
"""

from __future__ import annotations

from typing import Any

from buildbot.plugins import worker

from namaskah_ci.names import PIPELINE
from namaskah_ci.pipeline.registry import Registry
from namaskah_ci.settings import Settings
from namaskah_ci.workers.plan import WorkerPlan, pipeline_workers, reuse_worker


def make_plan(settings: Settings) -> WorkerPlan:
    if settings.workers.mode == "docker":
        from namaskah_ci.workers.docker.config import make_docker_plan

        return make_docker_plan(settings)
    from namaskah_ci.workers.local import make_local_plan

    return make_local_plan(settings)


def make_workers(settings: Settings, builder_names: list[str], registry: Registry) -> list[Any]:
    """A fresh list of workers: the pipeline's, each job builder's slots (docker mode: containers), `reuse`."""
    jobs = [name for name in builder_names if name != PIPELINE]
    if settings.workers.mode == "docker":
        from namaskah_ci.workers.docker.config import make_docker_workers

        pipelines = [worker.LocalWorker(name) for name in pipeline_workers(settings)]
        return [*pipelines, *make_docker_workers(settings, jobs, registry), reuse_worker()]
    from namaskah_ci.workers.local import make_local_workers

    return make_local_workers(settings, jobs, registry)
