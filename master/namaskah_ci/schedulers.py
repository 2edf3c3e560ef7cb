"""Schedulers: push → `pipeline`, pipeline → checks (Triggerable), nightly CodeQL, force buttons."""

from __future__ import annotations

from buildbot.plugins import schedulers, util

from namaskah_ci.factories import analysis_scheduler_name, check_scheduler_name
from namaskah_ci.jobs import Job
from namaskah_ci.settings import Settings

PIPELINE = "pipeline"
CODEQL = "codeql"
CODEQL_BRANCH = "main"  # codeql runs weekly on it, and after the checks of each of its pipelines


def force_scheduler_name(builder: str) -> str:
    """ForceScheduler names must be identifiers: `force_test_py3_9` for `test-py3.9`."""
    return "force_" + "".join(ch if ch.isalnum() else "_" for ch in builder)


def _force(name: str, builder: str, label: str) -> schedulers.ForceScheduler:
    return schedulers.ForceScheduler(
        name=name,
        builderNames=[builder],
        label=label,
        buttonName=label,
        codebases=[
            util.CodebaseParameter(
                "",
                label="Source",
                branch=util.StringParameter(name="branch", label="Branch", default="main"),
                revision=util.StringParameter(name="revision", label="Revision (empty: newest)", default=""),
                repository=util.FixedParameter(name="repository", default=""),
                project=util.FixedParameter(name="project", default="namaskah"),
            )
        ],
    )


def make_schedulers(settings: Settings, jobs: tuple[Job, ...]) -> list:
    """A fresh list of schedulers."""
    result: list = [
        schedulers.AnyBranchScheduler(
            name="pipeline-on-push",
            treeStableTimer=settings.repo.tree_stable_seconds or None,
            builderNames=[PIPELINE],
        ),
        _force(force_scheduler_name(PIPELINE), PIPELINE, "Run the pipeline"),
    ]
    for job in jobs:
        if job.in_pipeline:
            result.append(schedulers.Triggerable(name=check_scheduler_name(job.name), builderNames=[job.name]))
        result.append(_force(force_scheduler_name(job.name), job.name, f"Re-run {job.name}"))
    if any(job.name == CODEQL for job in jobs):
        result += [
            # Saturday 19:35 in the master's time zone: the master runs with TZ=UTC
            schedulers.Nightly(
                name="codeql-weekly", builderNames=[CODEQL], dayOfWeek=5, hour=19, minute=35, branch=CODEQL_BRANCH
            ),
            # each push to main: the `pipeline` build triggers it once its checks ended, so it does not
            # take CPU from them (factories.make_pipeline_factory)
            schedulers.Triggerable(name=analysis_scheduler_name(CODEQL), builderNames=[CODEQL]),
        ]
    return result
