"""Master-side steps that turn a revision's pipeline file into builds.

- `LoadPipeline` (first step of `pipeline`): pins the revision (a forced build
  of a branch gets the branch's newest), reads and validates `.namaskah-ci.yml`
  at it (`pipeline_source.py`), gives new jobs their builders
  (`builder_sync.py`) and hands the model to the fan-out. A bad file ends the
  build here: FAILURE, one line naming the file, line, key and problem, every
  problem in the step's log; no job runs, nothing deploys.
- `LoadJob` (first step of every job builder): the job's definition from the
  pipeline's trigger, or, for a forced or scheduled build, from the file at the
  build's revision; writes the job's directory on the worker (`job.json`, the
  secrets as 0600 files, docker mode's helpers) and adds the job's steps; a
  reused job (`reuse.py`) gets none: it links to the build it reuses.
"""

from __future__ import annotations

import json

from twisted.internet import defer, threads

from buildbot.process import buildstep
from buildbot.process.properties import Secret
from buildbot.process.results import FAILURE, SUCCESS
from buildbot.reporters.utils import getURLForBuild
from buildbot.steps.worker import CompositeStepMixin

from namaskah_ci import helpers, job_commands, names
from namaskah_ci.builder_sync import BuilderSyncError, ensure_builders
from namaskah_ci.job_factory import JobSetup, deadline_after, job_steps
from namaskah_ci.pipeline import JobSpec, PipelineError
from namaskah_ci.pipeline_source import PipelineConfig, SourceError, describe, short, source_for
from namaskah_ci.reuse import summary as reuse_summary
from namaskah_ci.steps.reuse import RecordReuse
from namaskah_ci.workers import resolve_interpreter


class _Resolving(buildstep.BuildStep):
    """Shared: the build's revision, pinned on the master."""

    def __init__(self, config: PipelineConfig, **kwargs):
        kwargs.setdefault("haltOnFailure", True)
        super().__init__(**kwargs)
        self.config = config
        self.summary = ""
        self.build_summary = ""

    def refuse(self, summary: str):
        self.summary = summary
        return FAILURE

    @defer.inlineCallbacks
    def pinned_revision(self, *properties: str):
        for name in properties:
            revision = self.getProperty(name)
            if revision:
                return revision
        branch = self.getProperty("branch") or self.config.default_branch
        revision = yield source_for(self.config).resolve_branch(branch)
        yield self.addCompleteLog("revision", f"no revision given: the newest on {branch} is {revision}\n")
        return revision

    def getResultSummary(self):
        if self.summary:
            summary = {"step": self.summary}
            if self.build_summary:
                summary["build"] = self.build_summary
            return summary
        return super().getResultSummary()


class LoadPipeline(_Resolving):
    """Read the revision's pipeline file and prepare the fan-out (see the module docstring)."""

    def __init__(self, config: PipelineConfig, disabled: tuple[str, ...] = (), **kwargs):
        kwargs.setdefault("name", "pipeline file")
        super().__init__(config, **kwargs)
        self.disabled = tuple(disabled)

    @defer.inlineCallbacks
    def run(self):
        branch = self.getProperty("branch")
        try:
            revision = yield self.pinned_revision("revision")
            self.setProperty("revision", revision, self.name)
            pipeline = yield source_for(self.config).pipeline_at(revision)
        except PipelineError as exc:
            self.setProperty(names.PROP_PIPELINE_ERROR, exc.summary, self.name)
            yield self.addCompleteLog("problems", "\n".join(exc.problems or [exc.summary]) + "\n")
            return self.refuse(exc.summary)
        except SourceError as exc:
            self.setProperty(names.PROP_PIPELINE_ERROR, str(exc), self.name)
            return self.refuse(str(exc))
        try:
            added = yield ensure_builders(
                self.master, self.config.registry_path, pipeline, branch == self.config.default_branch
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

    def __init__(self, config: PipelineConfig, setup: JobSetup, **kwargs):
        kwargs.setdefault("name", "job definition")
        super().__init__(config, **kwargs)
        self.setup = setup
        self.logEnviron = False

    @defer.inlineCallbacks
    def definition(self, builder: str):
        """(job, revision, origin) or raise PipelineError / SourceError / LookupError."""
        given = self.getProperty(names.PROP_JOB)
        revision = self.getProperty(names.PROP_JOB_REVISION)
        if given and revision and given.get("builder") == builder:
            return JobSpec.from_dict(given), revision, self.getProperty(names.PROP_PIPELINE_FILE) or ""
        revision = yield self.pinned_revision(names.PROP_JOB_REVISION, "revision")
        pipeline = yield source_for(self.config).pipeline_at(revision)
        job = pipeline.job(builder)
        origin = describe(pipeline, revision)
        if job is None:
            raise LookupError(f"{builder} is not defined in {origin}")
        return job, revision, origin

    @defer.inlineCallbacks
    def run(self):
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
        if isinstance(record, dict) and record.get("builder"):
            return (yield self.show_reused(record))
        interpreter = yield self.interpreter(job)
        missing = yield self.write_job_dir(job, revision, interpreter)
        steps = job_steps(job, self.setup, interpreter, missing)
        if self.getProperty(names.PROP_REUSE_KEY):
            steps.append(RecordReuse())
        self.build.addStepsAfterCurrentStep(steps)
        self.summary = f"{job.builder} at {short(revision)}" + (f" ({origin})" if origin else "")
        return SUCCESS

    @defer.inlineCallbacks
    def show_reused(self, record: dict):
        """A reused job: no steps; its result is the earlier build's SUCCESS, linked."""
        self.summary = reuse_summary(record)
        self.build_summary = self.summary
        if record.get("url"):
            yield self.addURL(f"{record['builder']} #{record['number']}", record["url"])
        return SUCCESS

    def interpreter(self, job: JobSpec):
        if self.setup.mode == "docker":
            return defer.succeed("python3")
        return threads.deferToThread(resolve_interpreter, dict(self.setup.interpreters), job.python)

    def _path(self, *parts: str) -> str:
        return self.build.path_module.join(self.setup.layout.job_dir, *parts)

    @defer.inlineCallbacks
    def write_job_dir(self, job: JobSpec, revision: str, interpreter: str):
        """job.json, the secrets (0600) and, in docker mode, the helpers; the secrets not configured."""
        for part in ("secrets", "tmp", "venv"):
            yield self.runRmdir(self.build.path_module.join(self.workdir, self._path(part)), abandonOnFailure=False)
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
        )
        yield self.downloadFileContentToWorker(
            self._path("job.json"), json.dumps(document, indent=1), mode=0o644, abandonOnFailure=True
        )
        if self.setup.transfer_helpers:
            for script in helpers.scripts():
                text = yield threads.deferToThread(_read, f"{helpers.HELPERS_DIR}/{script}")
                yield self.downloadFileContentToWorker(
                    self._path("helpers", script), text, mode=0o755, abandonOnFailure=True
                )
        missing = set()
        lines = []
        for secret, variable in job_commands.secret_files(job).items():
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
        shown = {k: v for k, v in document["env"].items()}
        log = [f"{key}={value}" for key, value in sorted(shown.items())] + lines
        yield self.addCompleteLog("environment", "\n".join(log) + "\n")
        return missing

    @defer.inlineCallbacks
    def build_url(self):
        builderid = yield self.build.getBuilderId()
        return getURLForBuild(self.master, builderid, self.build.number)


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as handle:
        return handle.read()
