"""Approving a fork's pull request in local mode (the "Approve and run a fork's pull request" form).

In local mode a job's commands run on the master's machine, so a pipeline
whose pull request comes from a fork does not start its jobs: it ends at once
(WARNINGS) saying it waits for an admin (steps/load.py). An admin reads the
PR, then gives its number in this form on the `pipeline` builder (admins
only, like every force form); `ApproveForkScheduler` finds the newest change
recorded for that PR and starts its pipeline again with `pr_approved_by` (the
admin). The approval covers that revision only: a newer push to the PR waits
again. Even approved, a fork's jobs get no secret (steps/load.py), never
record results for reuse, and never deploy. A number that is no fork PR is
refused in the form, naming the problem. Docker mode needs no approval (its
jobs run in containers), so the form exists in local mode only.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, NoReturn

from buildbot.data import resultspec
from buildbot.plugins import schedulers, util
from buildbot.schedulers.forcesched import CollectedValidationError
from twisted.internet import defer

from namaskah_ci import names
from namaskah_ci.names import PROP_PR_NUMBER
from namaskah_ci.text import short
from namaskah_ci.triggers.force_params import ReasonParameter, source_taken_elsewhere


def _refuse(message: str) -> NoReturn:
    raise CollectedValidationError({PROP_PR_NUMBER: message})


class ApproveForkScheduler(schedulers.ForceScheduler):
    """A ForceScheduler on `pipeline` whose one field is the fork PR's number (see the docstring)."""

    @defer.inlineCallbacks
    def newest_change(self, number: Any) -> Generator[Any, Any, dict[str, Any]]:
        if not isinstance(number, int) or number < 1:
            _refuse(f"{number!r} is not a pull request number")
        changes = yield self.master.data.get(
            ("changes",),
            filters=[resultspec.Filter("branch", "eq", [f"refs/pull/{number}/merge"])],
            order=["-changeid"],
            limit=1,
        )
        if not changes:
            _refuse(f"no pull request #{number} has been recorded (its webhook delivery makes the record)")
        newest: dict[str, Any] = changes[0]
        return newest

    @defer.inlineCallbacks
    def addBuildsetForSourceStampsWithDefaults(
        self, reason: str, sourcestamps: Any = None, properties: Any = None, **kwargs: Any
    ) -> Generator[Any, Any, Any]:
        number = properties.getProperty(PROP_PR_NUMBER)
        change = yield self.newest_change(number)
        recorded = {name: value for name, (value, _) in (change.get("properties") or {}).items()}
        if not recorded.get(names.PROP_PR_FORK):
            _refuse(f"pull request #{number} is not from a fork: its pipeline runs without approval")
        who = properties.getProperty("owner") or "an admin"
        for name, value in recorded.items():
            properties.setProperty(name, value, names.APPROVE_FORM_LABEL)
        properties.setProperty(names.PROP_PR_APPROVED_BY, who, names.APPROVE_FORM_LABEL)
        source = {
            "codebase": change.get("codebase") or "",
            "repository": change.get("repository") or "",
            "branch": f"refs/pull/{number}/merge",
            "revision": change["revision"],
            "project": change.get("project") or names.PROJECT,
        }
        reason = f"fork pull request #{number} at {short(change['revision'])} approved by {who}: {reason}"
        result = yield super().addBuildsetForSourceStampsWithDefaults(
            reason, sourcestamps=[source], properties=properties, **kwargs
        )
        return result


def make_approval_scheduler() -> ApproveForkScheduler:
    return ApproveForkScheduler(
        name=names.APPROVE_SCHEDULER,
        builderNames=[names.PIPELINE],
        label=names.APPROVE_FORM_LABEL,
        buttonName="Approve and run",
        reason=ReasonParameter(name="reason", label="Reason", default="reviewed the fork's change", size=20),
        codebases=source_taken_elsewhere(),
        properties=[util.IntParameter(name=PROP_PR_NUMBER, label="Pull request number (#)", default=0, required=True)],
    )
