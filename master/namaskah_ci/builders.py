"""Builder configs: the pipeline, one builder per job of the table."""

from __future__ import annotations

from buildbot.plugins import util

from namaskah_ci.deploy import make_deploy_gate
from namaskah_ci.factories import make_check_factory, make_pipeline_factory
from namaskah_ci.jobs import Job, check_job_names
from namaskah_ci.schedulers import CODEQL, CODEQL_BRANCH, PIPELINE
from namaskah_ci.settings import Settings
from namaskah_ci.workers import WorkerPlan, resolve_interpreter, worker_name


def builder_names(jobs: tuple[Job, ...]) -> list[str]:
    return [PIPELINE, *(job.name for job in jobs)]


def make_builders(settings: Settings, jobs: tuple[Job, ...], plan: WorkerPlan) -> list:
    """A fresh list of BuilderConfigs."""
    result = [
        util.BuilderConfig(
            name=PIPELINE,
            workernames=[worker_name(PIPELINE)],
            factory=make_pipeline_factory(
                [name for name in check_job_names(jobs) if name not in settings.checks.disabled],
                deploy_gate=make_deploy_gate(settings),
                analysis_names=tuple(job.name for job in jobs if job.name == CODEQL),
                analysis_branch=CODEQL_BRANCH,
            ),
            tags=["pipeline"],
            description="Fans out to every check for one revision",
        )
    ]
    for job in jobs:
        result.append(
            util.BuilderConfig(
                name=job.name,
                workernames=plan.job_workers(job.name),
                factory=make_check_factory(
                    job,
                    settings,
                    runner=plan.runner,
                    interpreter=plan.interpreter or resolve_interpreter(settings, job.python),
                    cache_root=plan.cache_root,
                    require_tools=plan.require_tools,
                    services_in_worker=plan.services_in_worker,
                    nice_commands=plan.nice_commands,
                ),
                # each request is one pipeline's revision: never merge two of them
                collapseRequests=False,
                tags=["check" if job.in_pipeline else "analysis"],
                description=f"{job.context} (timeout {job.timeout_minutes} min)",
            )
        )
    return result
