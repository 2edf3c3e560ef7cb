"""Builder configs: `pipeline`, and one builder per job the repository's pipeline files defined.

The job builders come from the job registry (`job_registry.py`): a job that
first appears in a commit's file gets its builder when that commit's pipeline
reconfigures the master (`builder_sync.py`). All job builders share one
factory; what a build runs comes from its revision's file (`job_factory.py`).
"""

from __future__ import annotations

from buildbot.plugins import util

from namaskah_ci import names
from namaskah_ci.deploy import make_deploy_gate
from namaskah_ci.factories import make_job_factory, make_pipeline_factory
from namaskah_ci.job_factory import JobSetup
from namaskah_ci.job_registry import Registry
from namaskah_ci.pipeline_source import PipelineConfig
from namaskah_ci.settings import Settings
from namaskah_ci.workers import WorkerPlan


def builder_names(registry: Registry) -> list[str]:
    return [names.PIPELINE, *registry.builders]


def make_builders(
    settings: Settings, registry: Registry, plan: WorkerPlan, config: PipelineConfig, setup: JobSetup
) -> list:
    """A fresh list of BuilderConfigs."""
    result = [
        util.BuilderConfig(
            name=names.PIPELINE,
            workernames=[names.worker_name(names.PIPELINE)],
            factory=make_pipeline_factory(
                config, disabled=tuple(settings.checks.disabled), deploy_gate=make_deploy_gate(settings)
            ),
            tags=["pipeline"],
            description="Reads the revision's .namaskah-ci.yml and fans out to its jobs",
        )
    ]
    job_factory = make_job_factory(config, setup)
    for entry in registry.entries:
        result.append(
            util.BuilderConfig(
                name=entry.builder,
                workernames=plan.job_workers(entry.builder),
                factory=job_factory,
                # each request is one pipeline's revision: never merge two of them
                collapseRequests=False,
                tags=["check" if entry.verdict else "analysis"],
                description=f"{entry.context} (job {entry.job}, timeout {entry.timeout_minutes} min)",
            )
        )
    return result
