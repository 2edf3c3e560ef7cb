"""Builder configs: `pipeline`, and one builder per job the repository's pipeline files defined.

The job builders come from the job registry (`pipeline/registry.py`): a job that
first appears in a commit's file gets its builder when that commit's pipeline
reconfigures the master (`jobs/builder_sync.py`). All job builders share one
factory; what a build runs comes from its revision's file (`steps/job_steps.py`);
a reused job's build runs on the master's `reuse` worker instead (`jobs/reuse.py`).

Concurrency: the pipeline builder has `workers.pipeline_slots` workers and each
job builder `workers.builder_slots` (per engine), so pipelines of several
branches run at once; a job build starts only while fewer than
`workers.job_slots` job builds are started (`placement.JobSlots`), and holds
one count of the `job-slots` master lock (`JobLocks`) while it runs, so no
more jobs run at once than that, whatever the pipelines. A reused build takes
no slot.
"""

from __future__ import annotations

from typing import Any

from buildbot.interfaces import IRenderable
from buildbot.plugins import util
from buildbot.util import ComparableMixin
from twisted.internet import defer
from zope.interface import implementer

from namaskah_ci import names
from namaskah_ci.builders.deploy import make_deploy_gate
from namaskah_ci.builders.factories import make_job_factory, make_pipeline_factory
from namaskah_ci.builders.setup import make_reuse_setup
from namaskah_ci.jobs.placement import JobSlots, select_worker
from namaskah_ci.pipeline.registry import Registry
from namaskah_ci.pipeline.source import PipelineConfig
from namaskah_ci.settings import Settings
from namaskah_ci.steps.job_steps import JobSetup
from namaskah_ci.workers.plan import WorkerPlan, job_slots, pipeline_workers

JOB_SLOTS_LOCK = "job-slots"


@implementer(IRenderable)
class JobLocks(ComparableMixin):
    """A job build's locks: one count of the shared `job-slots` lock, none for a reused build."""

    compare_attrs = ("slots",)

    def __init__(self, slots: int):
        self.slots = slots
        self.lock = util.MasterLock(JOB_SLOTS_LOCK, maxCount=slots)

    def getRenderingFor(self, props: Any) -> defer.Deferred[list[Any]]:
        return defer.succeed([] if props.getProperty(names.PROP_REUSED) else [self.lock.access("counting")])


def builder_names(registry: Registry) -> list[str]:
    return [names.PIPELINE, *registry.builders]


def make_builders(
    settings: Settings, registry: Registry, plan: WorkerPlan, config: PipelineConfig, setup: JobSetup
) -> list[Any]:
    """A fresh list of BuilderConfigs."""
    result: list[Any] = [
        util.BuilderConfig(
            name=names.PIPELINE,
            workernames=pipeline_workers(settings),
            factory=make_pipeline_factory(
                config,
                disabled=tuple(settings.checks.disabled),
                deploy_gate=make_deploy_gate(settings),
                reuse=make_reuse_setup(settings, setup),
                fork_approval=settings.workers.mode == "local",
            ),
            tags=["pipeline"],
            description="Reads the revision's .namaskah-ci.yml and fans out to its jobs",
        )
    ]
    job_factory = make_job_factory(config, setup)
    # the lock also matters to JobSlots: a build that held a lock makes Buildbot look at every builder
    # again when it ends, so a builder refused for want of a slot is retried once one frees up
    locks = JobLocks(job_slots(settings))
    can_start = JobSlots(job_slots(settings), registry.builders)
    for entry in registry.entries:
        result.append(
            util.BuilderConfig(
                name=entry.builder,
                workernames=[*plan.job_workers(entry.builder), names.REUSE_WORKER],
                nextWorker=select_worker,
                canStartBuild=can_start,
                locks=locks,
                factory=job_factory,
                # each request is one pipeline's revision: never merge two of them
                collapseRequests=False,
                tags=["check" if entry.verdict else "analysis"],
                description=f"{entry.context} (job {entry.job}, timeout {entry.timeout_minutes} min)",
            )
        )
    return result
