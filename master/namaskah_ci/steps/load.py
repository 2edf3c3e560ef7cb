"""Master-side steps that turn a revision's pipeline file into builds.

- `LoadPipeline` (first step of `pipeline`): pins the revision (a forced build
  of a branch gets the branch's newest), reads and validates `.namaskah-ci.yml`
  at it (`pipeline/source.py`), gives new jobs their builders
  (`jobs/builder_sync.py`) and hands the model to the fan-out. A bad file ends the
  build here: FAILURE, one line naming the file, line, key and problem, every
  problem in the step's log; no job runs, nothing deploys. A pull request
  without a merge result ends here ("conflicts with <base>"), and so does, in
  local mode, a fork's until an admin approves it (triggers/approval.py).
- `LoadJob` (first step of every job builder): the job's definition from the
  pipeline's trigger, or, for a forced or scheduled build, from the file at the
  build's revision; writes the job's directory on the worker (`job.json`, the
  secrets as 0600 files, docker mode's helpers) and adds the job's steps; a
  reused job (`jobs/reuse.py`) gets none: it links to the build it reuses. A fork's
  pull request gets no secret at all, caches of its own and records nothing
  for reuse.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Generator
from typing import Any

from buildbot.process import buildstep
from buildbot.process.properties import Secret
from buildbot.reporters.utils import getURLForBuild
from buildbot.steps.worker import CompositeStepMixin
from twisted.internet import defer, threads

from namaskah_ci import helpers, names
from namaskah_ci.jobs import commands as job_commands
from namaskah_ci.jobs.builder_sync import BuilderSyncError, ensure_builders
from namaskah_ci.jobs.hostenv import MissingPython, find_interpreter
from namaskah_ci.jobs.reuse import ReuseStore, in_flight
from namaskah_ci.jobs.reuse import summary as reuse_summary
from namaskah_ci.pipeline.model import PipelineError
from namaskah_ci.pipeline.source import PipelineConfig, SourceError, describe, source_for
from namaskah_ci.pipeline.specs import JobSpec
from namaskah_ci.steps.job import job_path
from namaskah_ci.steps.job_steps import JobSetup, deadline_after, job_steps
from namaskah_ci.steps.results import FAILURE, SUCCESS, WARNINGS
from namaskah_ci.steps.reuse import RecordReuse
from namaskah_ci.text import short


class _Resolving(buildstep.BuildStep):
    """Shared: the build's revision, pinned on the master."""

    def __init__(self, config: PipelineConfig, **kwargs: Any) -> None:
        kwargs.setdefault("haltOnFailure", True)
        super().__init__(**kwargs)
        self.config = config
        self.summary = ""
        self.build_summary = ""

    def refuse(self, summary: str) -> int:
        self.summary = summary
        return FAILURE

    @defer.inlineCallbacks
    def pinned_revision(self, *properties: str) -> Generator[Any, Any, str]:
        for name in properties:
            revision: str = self.getProperty(name)
            if revision:
                return revision
        branch = self.getProperty("branch") or self.config.default_branch
        revision = yield source_for(self.master, self.config).resolve_branch(branch)
        yield self.addCompleteLog("revision", f"no revision given: the newest on {branch} is {revision}\n")
        return revision

    def getResultSummary(self) -> dict[str, str]:
        if self.summary:
            summary = {"step": self.summary}
            if self.build_summary:
                summary["build"] = self.build_summary
            return summary
        stock: dict[str, str] = super().getResultSummary()
        return stock


def waiting_summary(number: int, head_repo: str) -> str:
    """What a fork's unapproved pipeline says until an admin approves it (triggers/approval.py)."""
    return (
        f"pull request #{number} from the fork {head_repo}: waiting for an admin's approval "
        f"(pipeline → {names.APPROVE_FORM_LABEL!r}, number {number})"
    )


def pull_request_stop(get: Callable[[str], Any], fork_approval: bool) -> tuple[int, str, str] | None:
    """(result, step summary, build summary) ending a pull request's pipeline before any job, or None:
    FAILURE when it has no merge result, WARNINGS for a fork's awaiting an admin (local mode)."""
    number = get(names.PROP_PR_NUMBER)
    if not number:
        return None
    conflict = get(names.PROP_PR_CONFLICT)
    if conflict:
        summary = (
            f"pull request #{number} conflicts with {conflict}: GitHub has no merge result "
            f"(refs/pull/{number}/merge): no job run"
        )
        return FAILURE, summary, f"conflicts with {conflict}"
    if get(names.PROP_PR_FORK) and fork_approval and not get(names.PROP_PR_APPROVED_BY):
        summary = waiting_summary(number, get(names.PROP_PR_HEAD_REPO))
        return WARNINGS, summary, summary
    return None


class LoadPipeline(_Resolving):
    """Read the revision's pipeline file and prepare the fan-out (see the module docstring)."""

    def __init__(
        self, config: PipelineConfig, disabled: tuple[str, ...] = (), fork_approval: bool = False, **kwargs: Any
    ) -> None:
        kwargs.setdefault("name", "pipeline file")
        kwargs.setdefault("warnOnWarnings", True)  # a fork waiting for approval shows as WARNINGS
        super().__init__(config, **kwargs)
        self.disabled = tuple(disabled)
        self.fork_approval = fork_approval

    def pull_request_stop(self) -> int | None:
        """A result that ends a pull request's pipeline before any job (conflict, fork unapproved)."""
        stop = pull_request_stop(self.getProperty, self.fork_approval)
        if stop is None:
            return None
        result, self.summary, self.build_summary = stop
        if result == WARNINGS:
            self.build.terminate = True  # the later steps that always run say why nothing deploys
        return result

    @defer.inlineCallbacks
    def run(self) -> Generator[Any, Any, int]:
        stop = self.pull_request_stop()
        if stop is not None:
            return stop
        branch = names.jobs_branch(self.getProperty("branch"), self.getProperty(names.PROP_PR_BASE))
        try:
            revision = yield self.pinned_revision("revision")
            self.setProperty("revision", revision, self.name)
            pipeline = yield source_for(self.master, self.config).pipeline_at(revision)
        except PipelineError as exc:
            self.setProperty(names.PROP_PIPELINE_ERROR, exc.summary, self.name)
            yield self.addCompleteLog("problems", "\n".join(exc.problems or [exc.summary]) + "\n")
            return self.refuse(exc.summary)
        except SourceError as exc:
            self.setProperty(names.PROP_PIPELINE_ERROR, str(exc), self.name)
            return self.refuse(str(exc))
        try:
            default = branch == self.config.default_branch and not self.getProperty(names.PROP_PR_NUMBER)
            added = yield ensure_builders(
                self.master, self.config.registry_path, pipeline, default, limit=self.config.max_registered
            )
        except BuilderSyncError as exc:
            return self.refuse(str(exc))
        origin = describe(pipeline, revision)
        self.build.namaskah_pipeline = pipeline
        checks = [job.builder for job in pipeline.verdict_jobs(branch) if job.builder not in self.disabled]
        self.setProperty(names.PROP_PIPELINE_FILE, origin, self.name)
        self.setProperty(names.PROP_PIPELINE_JOBS, checks, self.name)
        lines = [f"{origin}: {len(pipeline.jobs)} builder(s)"]
        for job in pipeline.jobs:
            where = "runs" if job.runs_on(branch) else f"not on {branch}"
            role = "check" if job.verdict else "after the checks"
            off = " (disabled by [checks] disabled)" if job.builder in self.disabled else ""
            lines.append(f"  {job.builder}: {role}, {where}{off}")
        if added:
            lines.append(f"new builders: {', '.join(added)}")
        yield self.addCompleteLog("jobs", "\n".join(lines) + "\n")
        self.summary = f"{len(checks)} check(s) from {origin}"
        return SUCCESS


class LoadJob(CompositeStepMixin, _Resolving):
    """Find this build's job definition, write its directory on the worker, add its steps."""

    waiting: defer.Deferred[None] | None = None  # another build running the same job, waited for

    def __init__(self, config: PipelineConfig, setup: JobSetup, **kwargs: Any) -> None:
        kwargs.setdefault("name", "job definition")
        super().__init__(config, **kwargs)
        self.setup = setup
        self.logEnviron = False

    @defer.inlineCallbacks
    def definition(self, builder: str) -> Generator[Any, Any, tuple[JobSpec, str, str]]:
        """(job, revision, origin) or raise PipelineError / SourceError / LookupError."""
        given = self.getProperty(names.PROP_JOB)
        revision = self.getProperty(names.PROP_JOB_REVISION)
        if given and revision and given.get("builder") == builder:
            passed = JobSpec.from_dict(given)
            if not passed.passwords_missing:  # a service password the file gives: read from the file again
                return passed, revision, self.getProperty(names.PROP_PIPELINE_FILE) or ""
        revision = yield self.pinned_revision(names.PROP_JOB_REVISION, "revision")
        pipeline = yield source_for(self.master, self.config).pipeline_at(revision)
        job = pipeline.job(builder)
        origin = describe(pipeline, revision)
        if job is None:
            raise LookupError(f"{builder} is not defined in {origin}")
        return job, revision, origin

    @defer.inlineCallbacks
    def run(self) -> Generator[Any, Any, int]:
        builder = self.getProperty("buildername")
        try:
            job, revision, origin = yield self.definition(builder)
        except PipelineError as exc:
            yield self.addCompleteLog("problems", "\n".join(exc.problems or [exc.summary]) + "\n")
            return self.refuse(exc.summary)
        except (SourceError, LookupError) as exc:
            return self.refuse(str(exc).strip("'\""))
        for name, value in (
            (names.PROP_JOB, job.to_dict()),
            (names.PROP_JOB_REVISION, revision),
            (names.PROP_STATUS_CONTEXT, job.context),
            (names.PROP_DEADLINE, deadline_after(job.timeout_minutes)),
        ):
            self.setProperty(name, value, self.name)
        if origin:
            self.setProperty(names.PROP_PIPELINE_FILE, origin, self.name)
        record = self.getProperty(names.PROP_REUSED)
        if not record:
            record = yield self.same_job_running()
        if isinstance(record, dict) and record.get("builder"):
            reused: int = yield self.show_reused(record)
            return reused
        if self.getProperty(names.PROP_PR_FORK):
            self.setup = self.setup.untrusted()  # this build's own step object: caches apart
        interpreter = yield self.interpreter(job)
        missing = yield self.write_job_dir(job, revision, interpreter)
        steps = job_steps(job, self.setup, interpreter, missing)
        if self.getProperty(names.PROP_REUSE_KEY) and not self.getProperty(names.PROP_PR_FORK):
            steps.append(RecordReuse())  # a fork's results are never offered to anyone else
        self.build.addStepsAfterCurrentStep(steps)
        self.summary = f"{job.builder} at {short(revision)}" + (f" ({origin})" if origin else "")
        return SUCCESS

    @defer.inlineCallbacks
    def same_job_running(self) -> Generator[Any, Any, dict[str, Any] | None]:
        """Another build runs this job's key now (a branch push and its PR's merge result with the
        same tree): wait for it, and return its record when it succeeded. Else claim the key."""
        key = self.getProperty(names.PROP_REUSE_KEY)
        if not key or self.getProperty(names.PROP_PR_FORK):
            return None
        running = in_flight(self.master)
        who = f"{self.getProperty('buildername')}/{self.build.number}"
        store = ReuseStore(self.master)
        for attempt in range(1, 100):
            record: dict[str, Any] | None = yield store.lookup(key)  # it may have ended since the fan-out looked
            if record:
                self.setProperty(names.PROP_REUSED, record, self.name)
                return record
            other = running.claim(key, who)
            if other is None:
                self.build.waitUntilFinished().addBoth(lambda _: running.release(key, who))
                return None
            text = f"{other} runs this job on the same inputs now: waiting for it\n"
            yield self.addCompleteLog("same job" if attempt == 1 else f"same job ({attempt})", text)
            self.waiting = running.wait(key)
            yield self.waiting
            self.waiting = None
            if self.stopped:
                return None
        return None

    def interrupt(self, reason: Any) -> Any:
        waiting = self.waiting
        if waiting is not None and not waiting.called:
            waiting.callback(None)
        return super().interrupt(reason)

    @defer.inlineCallbacks
    def show_reused(self, record: dict[str, Any]) -> Generator[Any, Any, int]:
        """A reused job: no steps; its result is the earlier build's SUCCESS, linked."""
        self.summary = reuse_summary(record)
        self.build_summary = self.summary
        if record.get("url"):
            yield self.addURL(f"{record['builder']} #{record['number']}", record["url"])
        return SUCCESS

    @defer.inlineCallbacks
    def interpreter(self, job: JobSpec) -> Generator[Any, Any, str]:
        """The job's interpreter, one its user can run (a private one copied for it at its first use, in a
        thread); a version the host lacks ends the step, naming the versions it has."""
        if self.setup.mode == "docker":
            return "python3"
        interpreters = dict(self.setup.interpreters)
        try:
            path, note = yield threads.deferToThread(find_interpreter, interpreters, job.python, self.setup.job_user)  # type: ignore[no-untyped-call]  # Twisted leaves it unannotated
        except MissingPython as exc:
            self.summary = self.build_summary = str(exc)
            yield self.addCompleteLog("interpreter", f"{exc}\n")
            raise buildstep.BuildStepFailed() from None
        if note:
            yield self.addCompleteLog("interpreter", f"{note}\n")
        return str(path)

    def _path(self, *parts: str) -> str:
        path: str = self.build.path_module.join(self.setup.layout.job_dir, *parts)
        return path

    @defer.inlineCallbacks
    def write_job_dir(self, job: JobSpec, revision: str, interpreter: str) -> Generator[Any, Any, set[str]]:
        """job.json, the secrets (0600) and, in docker mode, the helpers; the secrets not configured."""
        # the checkout directory may be gone (a build stopped while it cloned afresh): the job directory
        # is removed by its own path, and written through `build/..` once `build` exists again, so
        # nothing an earlier build left there (its secrets above all) reaches this one
        for part in ("secrets", "tmp", "venv"):
            path = job_path(self.build.path_module, self.workdir, self._path(part))
            yield self.runRmdir(path, abandonOnFailure=False)
        yield self.runMkdir(self.workdir, abandonOnFailure=False)
        document = job_commands.job_document(
            job,
            self.setup.layout,
            interpreter=interpreter,
            base_path=self.setup.base_path,
            worker_env=self.setup.env_for(job),
            revision=revision,
            branch=self.getProperty("branch") or "",
            build_url=(yield self.build_url()),
            nice=self.setup.nice,
            docker_socket=not self.setup.engine_refusal(
                self.getProperty("branch"), bool(self.getProperty(names.PROP_PR_FORK))
            ),
        )
        yield self.downloadFileContentToWorker(
            self._path("job.json"), json.dumps(document, indent=1), mode=0o644, abandonOnFailure=True
        )
        if self.setup.transfer_helpers:
            for script in helpers.scripts():
                text = yield threads.deferToThread(_read, f"{helpers.HELPERS_DIR}/{script}")  # type: ignore[no-untyped-call]  # Twisted leaves it unannotated
                yield self.downloadFileContentToWorker(
                    self._path("helpers", script), text, mode=0o755, abandonOnFailure=True
                )
        missing: set[str] = set()
        lines: list[str] = []
        fork = self.getProperty(names.PROP_PR_FORK)
        for secret, variable in job_commands.secret_files(job).items():
            if fork:
                missing.add(secret)
                lines.append(f"{variable}: not set (a pull request from a fork gets no secrets)")
                continue
            try:
                value = yield self.build.render(Secret(secret))  # registered for redaction in this build
            except KeyError:
                value = None
            if not value:
                missing.add(secret)
                lines.append(f"{variable}: not set (no {secret} secret on this master)")
                continue
            yield self.downloadFileContentToWorker(
                self._path("secrets", variable), value.strip(), mode=0o600, abandonOnFailure=True
            )
            lines.append(f"{variable}: set from the {secret} secret")
        shown = dict(document["env"].items())
        log = [*(f"{key}={value}" for key, value in sorted(shown.items())), *lines]
        yield self.addCompleteLog("environment", "\n".join(log) + "\n")
        return missing

    @defer.inlineCallbacks
    def build_url(self) -> Generator[Any, Any, str]:
        builderid = yield self.build.getBuilderId()
        url: str = getURLForBuild(self.master, builderid, self.build.number)
        return url


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as handle:
        return handle.read()
