"""Schedulers: push → `pipeline`; pipeline → job builders (Triggerable); schedules; force buttons
(the pipeline also has "Re-run failed jobs", `triggers/rerun.py`, and in local mode "Approve and run a
fork's pull request", `triggers/approval.py`). A commit saying `[skip ci]` starts nothing (`changes.wanted`).

Every job builder has a Triggerable (the pipeline's fan-out and its analysis
step start it with the job's definition) and an admins-only force form
(branch, revision: the build then reads the job from that revision's file).
A job with `schedule:` in the default branch's file gets a `Nightly` on that
branch (the master runs with TZ=UTC).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from buildbot.plugins import schedulers, util

from namaskah_ci import names
from namaskah_ci.pipeline.registry import Registry
from namaskah_ci.pipeline.schedule import parse_cron
from namaskah_ci.settings import Settings
from namaskah_ci.triggers.approval import make_approval_scheduler
from namaskah_ci.triggers.changes import wanted
from namaskah_ci.triggers.first_run import FirstRunScheduler
from namaskah_ci.triggers.force_params import BranchParameter, ReasonParameter, RevisionParameter, codebase
from namaskah_ci.triggers.rerun import make_rerun_scheduler


def _force(
    name: str, builder: str, label: str, branch: str, properties: Sequence[Any] = ()
) -> schedulers.ForceScheduler:
    return schedulers.ForceScheduler(
        properties=list(properties),
        name=name,
        builderNames=[builder],
        label=label,
        buttonName=label,
        reason=ReasonParameter(name="reason", default="force build", size=20),
        codebases=[
            codebase(
                BranchParameter(name="branch", label="Branch", default=branch),
                RevisionParameter(name="revision", label="Revision (empty: newest)", default=""),
                label="Source",
            )
        ],
    )


def make_schedulers(settings: Settings, registry: Registry) -> list[Any]:
    """A fresh list of schedulers."""
    default_branch = settings.repo.default_branch
    result: list[Any] = [
        schedulers.AnyBranchScheduler(
            name=names.PUSH_SCHEDULER,
            treeStableTimer=settings.repo.tree_stable_seconds or None,
            builderNames=[names.PIPELINE],
            change_filter=util.ChangeFilter(filter_fn=wanted),
        ),
        _force(
            names.force_scheduler_name(names.PIPELINE),
            names.PIPELINE,
            "Run the pipeline",
            default_branch,
            properties=[
                util.BooleanParameter(
                    name=names.PROP_RUN_EVERYTHING, label="Run everything (reuse no earlier result)", default=False
                )
            ],
        ),
    ]
    result.append(make_rerun_scheduler())
    if settings.workers.mode == "local":
        result.append(make_approval_scheduler())
    if settings.pipeline.first_run:
        result.append(
            FirstRunScheduler(
                name=names.FIRST_RUN_SCHEDULER,
                builderNames=[names.PIPELINE],
                branch=default_branch,
                repository=settings.repo_url,
            )
        )
    for entry in registry.entries:
        result.append(
            schedulers.Triggerable(name=names.check_scheduler_name(entry.builder), builderNames=[entry.builder])
        )
        result.append(
            _force(names.force_scheduler_name(entry.builder), entry.builder, f"Re-run {entry.builder}", default_branch)
        )
        if entry.schedule:
            result.append(
                schedulers.Nightly(
                    name=names.schedule_scheduler_name(entry.builder),
                    builderNames=[entry.builder],
                    branch=default_branch,
                    **parse_cron(entry.schedule),
                )
            )
    return result
