"""The deploy gate: nothing reaches an environment unless its pipeline passed every required check.

`DeployGate` runs in the `pipeline` build after the fan-out: on a deploy
branch, when every required check ended "success" (a required check that did
not run is not a success), it triggers the environment's deploy builder for
this revision (pinned in the deploy build's source stamp); otherwise it ends
SKIPPED and says why. The required checks are `[checks] required` when the
operator set it, else the verdict jobs of the pipeline file at the revision
(matrix entries expanded, `verdict: false` jobs and `[checks] disabled` left
out), which the step then names. A pull
request's pipeline never deploys. A re-run of
failed jobs (triggers/rerun.py) deploys only while its revision is still the newest
change of the branch.
`VerifyPipelinePassed` is the first real step of a deploy build: a build the
gate triggered passes; a forced one resolves its revision (default: the newest
change on the branch) and looks up that revision's newest pipeline build, and
deploys only if it passed, unless the admin ticked the override, which the
build then records (property `gate_override`, WARNINGS). A revision whose
pipeline still runs is not refused: the build ends SKIPPED saying so (that
pipeline's own gate requests the deploy when it passes).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Generator
from typing import Any

from buildbot.steps.trigger import Trigger
from twisted.internet import defer

from namaskah_ci import names
from namaskah_ci.names import (
    PROP_GATE_OVERRIDE,
    PROP_GATE_PIPELINE,
    PROP_OVERRIDE_REQUEST,
    PROP_REVISION,
    PROP_SUPERSEDED,
)
from namaskah_ci.steps.deploy.base import DeployStep, DeployTarget
from namaskah_ci.steps.deploy.history import find_pipeline_build, newest_branch_revision
from namaskah_ci.steps.results import FAILURE, SKIPPED, SUCCESS, WARNINGS
from namaskah_ci.text import short

SUCCESS_NAME = "success"
FILE_VERDICT = "the pipeline file's verdict jobs"


@dataclasses.dataclass(frozen=True)
class Verdict:
    passed: bool
    reason: str
    required: tuple[str, ...] = ()
    from_file: bool = False  # the operator set no [checks] required: the file's verdict jobs are required

    def which(self) -> str:
        """'required (the pipeline file's verdict jobs): a, b' when the file chose them, else ''."""
        return f"required ({FILE_VERDICT}): {', '.join(self.required)}" if self.from_file else ""

    def with_which(self, text: str) -> str:
        return f"{text}; {self.which()}" if self.from_file and self.required else text


def required_checks_verdict(
    check_results: dict[str, str] | None, required: list[str], defined: list[str] | None = None, origin: str = ""
) -> Verdict:
    """Did every required check succeed? The reason names each one that did not.

    `defined`: the checks the revision's pipeline file defines for the branch; a required check it
    lacks counts as not passed (a file cannot deploy by dropping a required job). An empty
    `required` (the operator set no `[checks] required`) requires exactly `defined`."""
    if not required:
        if defined is None:
            return Verdict(False, f"{FILE_VERDICT} are unknown (no pipeline file was read)", from_file=True)
        if not defined:
            return Verdict(False, f"{origin or 'the pipeline file'} has no verdict job on this branch", from_file=True)
        verdict = required_checks_verdict(check_results, list(defined), defined, origin)
        return dataclasses.replace(verdict, from_file=True)
    results = check_results or {}
    problems = []
    for name in required:
        result = results.get(name)
        if defined is not None and name not in defined:
            problems.append(f"{name} is not defined in {origin or 'the pipeline file'}")
        elif result is None:
            problems.append(f"{name} did not run")
        elif result != SUCCESS_NAME:
            problems.append(f"{name}: {result}")
    if problems:
        return Verdict(False, ", ".join(problems), tuple(required))
    count = len(required)
    return Verdict(True, f"all {count} required check{'' if count == 1 else 's'} passed", tuple(required))


class DeployGate(Trigger):
    """Trigger the deploy builder of the build's branch when every required check succeeded."""

    def __init__(self, branch_schedulers: dict[str, str], required: list[str], **kwargs: Any) -> None:
        kwargs.setdefault("name", "deploy gate")
        kwargs.setdefault("alwaysRun", True)
        kwargs.setdefault("waitForFinish", False)
        kwargs.setdefault("updateSourceStamp", False)
        kwargs.setdefault("flunkOnFailure", False)
        super().__init__(schedulerNames=sorted(set(branch_schedulers.values())), **kwargs)
        self.branch_schedulers = dict(branch_schedulers)
        self.required = list(required)
        self.chosen: str | None = None
        self.gate_summary = ""

    def prepareSourcestampListForTrigger(self) -> list[dict[str, Any]]:
        """The deploy build's source stamp names the revision this pipeline pinned (a first run's or a
        forced pipeline's stamp has none): the deploy build deploys exactly what passed here."""
        stamps: list[dict[str, Any]] = super().prepareSourcestampListForTrigger()
        revision = self.getProperty("revision")
        for stamp in stamps:
            if revision and not stamp.get("revision"):
                stamp["revision"] = revision
        return stamps

    def getSchedulersAndProperties(self) -> list[dict[str, Any]]:
        number = self.getProperty("buildnumber")
        return [
            {
                "sched_name": self.chosen,
                "props_to_set": {PROP_GATE_PIPELINE: f"pipeline #{number}"},
                "unimportant": False,
            }
        ]

    @defer.inlineCallbacks
    def run(self) -> Generator[Any, Any, int]:
        branch = self.getProperty("branch")
        revision = self.getProperty("revision")
        scheduler = self.branch_schedulers.get(branch)
        verdict = required_checks_verdict(
            self.getProperty(names.PROP_CHECK_RESULTS),
            self.required,
            self.getProperty(names.PROP_PIPELINE_JOBS),
            self.getProperty(names.PROP_PIPELINE_FILE) or "",
        )
        pull = self.getProperty(names.PROP_PR_NUMBER)
        if pull:
            self.gate_summary = f"pull request #{pull}: pull requests never deploy"
            return SKIPPED
        if scheduler is None:
            self.gate_summary = f"branch {branch or '?'} does not deploy"
            return SKIPPED
        problem = self.getProperty(names.PROP_PIPELINE_ERROR)
        if problem:
            self.gate_summary = "not deploying: the pipeline file is unusable"
            return SKIPPED
        if not verdict.passed:
            self.gate_summary = verdict.with_which(f"not deploying: {verdict.reason}")
            return SKIPPED
        if not revision:
            self.gate_summary = "not deploying: this pipeline ran without a pinned revision"
            return SKIPPED
        if self.getProperty(names.PROP_RERUN_OF):
            newest = yield newest_branch_revision(self.master, branch)
            if newest and newest != revision:
                self.gate_summary = f"not deploying: {branch} has moved on to {short(newest)} since {short(revision)}"
                return SKIPPED
        self.chosen = scheduler
        result: int = yield super().run()
        self.gate_summary = verdict.with_which(f"{verdict.reason}: deploy of {short(revision)} requested ({scheduler})")
        return result

    def getResultSummary(self) -> dict[str, str]:
        if self.gate_summary:
            return {"step": self.gate_summary}
        default: dict[str, str] = super().getResultSummary()
        return default


class VerifyPipelinePassed(DeployStep):
    """Pin the revision to deploy and make sure its pipeline passed (or the admin overrode)."""

    def __init__(self, target: DeployTarget, required: list[str], **kwargs: Any) -> None:
        kwargs.setdefault("name", "pipeline gate")
        kwargs.setdefault("haltOnFailure", True)
        kwargs.setdefault("warnOnWarnings", True)  # an override shows as WARNINGS on the build
        super().__init__(target, **kwargs)
        self.required = list(required)

    def refuse(self, reason: str) -> int:
        self.summary = self.build_summary = f"not deployed: {reason}"
        return FAILURE

    @defer.inlineCallbacks
    def execute(self) -> Generator[Any, Any, int]:
        revision = self.getProperty("revision")
        pipeline = self.getProperty(PROP_GATE_PIPELINE)
        if pipeline and revision:
            self.setProperty(PROP_REVISION, revision, self.name)
            self.summary = f"{pipeline} passed every required check: deploying {short(revision)}"
            return SUCCESS
        if not revision:
            revision = yield newest_branch_revision(self.master, self.target.branch)
            if not revision:
                return self.refuse(f"no revision given and no change seen on {self.target.branch} yet")
            yield self.note(f"no revision given: newest change on {self.target.branch} is {revision}")
        record = yield find_pipeline_build(self.master, revision)
        if record is None:
            verdict = Verdict(False, f"no pipeline build of {short(revision)}")
        elif not record.complete:
            # not a failed gate: that pipeline's own gate requests the deploy when it passes
            waiting = (
                f"pipeline #{record.number} of {short(revision)} is still running: its gate deploys it if it passes"
            )
            yield self.note(waiting)
            self.setProperty(PROP_REVISION, revision, self.name)
            self.setProperty(PROP_SUPERSEDED, f"not deployed yet: {waiting}", self.name)
            self.summary = self.build_summary = f"not deployed yet: {waiting}"
            return SKIPPED
        else:
            verdict = required_checks_verdict(record.check_results, self.required, record.defined, record.origin)
            verdict = dataclasses.replace(
                verdict, reason=verdict.with_which(f"pipeline #{record.number}: {verdict.reason}")
            )
            revision = record.revision
        yield self.note(verdict.reason)
        self.setProperty(PROP_REVISION, revision, self.name)
        if verdict.passed:
            self.summary = f"{verdict.reason}: deploying {short(revision)}"
            return SUCCESS
        if self.getProperty(PROP_OVERRIDE_REQUEST):
            who = self.getProperty("owner") or "an admin"
            why = self.getProperty("reason") or "no reason given"
            record_text = f"gate overridden by {who} ({why}): {verdict.reason}"
            self.setProperty(PROP_GATE_OVERRIDE, record_text, self.name)
            yield self.note(record_text)
            self.summary = self.build_summary = f"OVERRIDE by {who}: deploying {short(revision)} ({verdict.reason})"
            return WARNINGS
        return self.refuse(verdict.reason)
