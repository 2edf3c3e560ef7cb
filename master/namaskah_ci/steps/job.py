"""The steps a job build runs on its worker: checkout at the pinned revision, the file's steps, cleanup.

- `PinnedGit`: the stock Git step, checking out the revision the job's
  definition was read at (`namaskah_revision`), so a branch that moves while
  the build waits cannot give it other code than its definition.
- `JobStep`: one step of the pipeline file, run through `ci_step.py` (the
  job's own environment). `continue: true` lets later steps run and still
  fails the job; `allow_failure: true` turns a failure into a warning; a step
  `only_with_secret` whose secret is not configured is skipped, saying so.
- `CleanupJob`: removes the job's secrets and TMPDIR whatever ended the build.

No step logs its environment (`logEnviron=False`): the header would show the
worker's environment, which for a local worker is the master's.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from buildbot.process import buildstep
from buildbot.steps.shell import ShellCommand
from buildbot.steps.source.git import Git
from buildbot.steps.worker import CompositeStepMixin
from twisted.internet import defer

from namaskah_ci import names
from namaskah_ci.steps import results


class PinnedGit(Git):
    """Git at the revision the job's definition came from (falls back to the source stamp's)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("logEnviron", False)
        super().__init__(**kwargs)

    def run_vc(self, branch: str | None, revision: str | None, patch: Any) -> Any:
        pinned = self.getProperty(names.PROP_JOB_REVISION)
        if pinned:
            self.revision = pinned
            revision = pinned
        return super().run_vc(branch, revision, patch)


class JobStep(ShellCommand):
    """A pipeline-file step; `skip_reason` set means it is shown as skipped and never runs. A command
    killed by a signal (an out-of-memory kill, someone's `kill -9`) says so in its summary."""

    def __init__(self, skip_reason: str = "", **kwargs: Any) -> None:
        kwargs.setdefault("logEnviron", False)
        if skip_reason:
            kwargs["doStepIf"] = False
        super().__init__(**kwargs)
        self.skip_reason = skip_reason
        self.exit_code: int | None = None

    @defer.inlineCallbacks
    def run(self) -> Generator[Any, Any, int]:
        cmd = yield self.makeRemoteShellCommand()
        yield self.runCommand(cmd)
        self.exit_code = cmd.rc
        result: int = cmd.results()
        return result

    def getResultSummary(self) -> dict[str, str]:
        if self.skip_reason:
            return {"step": self.skip_reason}
        summary: dict[str, str] = super().getResultSummary()
        if self.exit_code == -1 and self.results not in (results.SUCCESS, None) and not self.stopped:
            text = f"{self.name}: killed by a signal"
            summary = {"step": text, "build": text}
        return summary


def job_path(path_module: Any, workdir: str, *parts: str) -> str:
    """A path beside the checkout (`build/../.namaskah-ci/...`) without passing through `build`, which
    a build stopped while cloning leaves missing (the worker could not resolve `build/..` then)."""
    path: str = path_module.normpath(path_module.join(workdir, *parts))
    return path


class CleanupJob(CompositeStepMixin, buildstep.BuildStep):
    """Remove `<job dir>/secrets` and `<job dir>/tmp` (always runs, never fails the job)."""

    def __init__(self, job_dir: str, **kwargs: Any) -> None:
        kwargs.setdefault("name", "cleanup")
        kwargs.setdefault("alwaysRun", True)
        kwargs.setdefault("flunkOnFailure", False)
        kwargs.setdefault("warnOnFailure", True)
        kwargs.setdefault("hideStepIf", lambda result, step: result == results.SUCCESS)
        super().__init__(**kwargs)
        self.job_dir = job_dir
        self.logEnviron = False

    @defer.inlineCallbacks
    def run(self) -> Generator[Any, Any, int]:
        failed = False
        for part in ("secrets", "tmp"):
            path = job_path(self.build.path_module, self.workdir, self.job_dir, part)
            rc = yield self.runRmdir(path, abandonOnFailure=False)
            failed = failed or bool(rc)
        return results.WARNINGS if failed else results.SUCCESS
