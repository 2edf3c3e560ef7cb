"""Build factories: the `pipeline` fan-out and the one factory every job builder shares.

- `pipeline`: read the revision's pipeline file (`LoadPipeline`), trigger its
  checks in parallel and wait (`FanOut`), start the jobs outside the verdict
  (`StartAnalysis`, not waited for), then the deploy gate.
- a job builder: `LoadJob`, which finds the job's definition at the build's
  revision and adds its steps (`job_factory.job_steps`).
"""

from __future__ import annotations

from typing import Any

from buildbot.process.factory import BuildFactory

from namaskah_ci.jobs.reuse import ReuseSetup
from namaskah_ci.pipeline.source import PipelineConfig
from namaskah_ci.steps import hide_skipped
from namaskah_ci.steps.fanout import FanOut, StartAnalysis
from namaskah_ci.steps.job_steps import JobSetup
from namaskah_ci.steps.load import LoadJob, LoadPipeline


def _has_analysis(step: Any) -> bool:
    return bool(step.selected_jobs())


def make_pipeline_factory(
    config: PipelineConfig,
    disabled: tuple[str, ...] = (),
    deploy_gate: Any = None,
    reuse: ReuseSetup | None = None,
    fork_approval: bool = False,
) -> BuildFactory:
    """Read the file, fan out, start the analysis jobs; `deploy_gate` (deploy.make_deploy_gate) then
    triggers the branch's deploy when every required check passed. With `reuse`, a job whose key
    matches an earlier SUCCESS shows that result (jobs/reuse.py). `fork_approval` (local mode): a fork's
    pull request waits for an admin (triggers/approval.py)."""
    factory = BuildFactory()
    factory.addStep(LoadPipeline(config, disabled=disabled, fork_approval=fork_approval))
    factory.addStep(FanOut(disabled=disabled, reuse=reuse, config=config))
    factory.addStep(StartAnalysis(doStepIf=_has_analysis, hideStepIf=hide_skipped, reuse=reuse, config=config))
    if deploy_gate is not None:
        factory.addStep(deploy_gate)
    return factory


def make_job_factory(config: PipelineConfig, setup: JobSetup) -> BuildFactory:
    factory = BuildFactory()
    factory.addStep(LoadJob(config, setup))
    return factory
