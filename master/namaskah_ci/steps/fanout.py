"""The `pipeline` builder's fan-out: trigger every job of the revision's pipeline file, wait, report.

`FanOut` is a stock `Trigger` whose schedulers come from the model `LoadPipeline`
loaded (`check-<builder>` for each job of the verdict that runs on the branch,
minus `[checks] disabled`), each triggered with its job's definition
(`namaskah_job`) and the pinned revision, so the job builds run exactly what
that revision's file says. A job whose reuse key matches an earlier SUCCESS
is triggered with that build's record and shows its result (jobs/reuse.py); the
`reuse` log says, for each job, whether it runs or what it reuses. It sets the build property `check_results`
({builder: result name}) for the deploy gate and lists every job's result in
its summary. `StartAnalysis` starts the jobs outside the verdict (e.g. codeql)
once the checks ended, without waiting for them.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from buildbot.steps.trigger import Trigger
from twisted.internet import defer
from twisted.python import log

from namaskah_ci import names
from namaskah_ci.jobs.reuse import ReuseSetup, ReuseStore, history_facts, runtime_facts
from namaskah_ci.jobs.reuse import summary as reuse_summary
from namaskah_ci.pipeline.inputs import key_patterns, reuse_key
from namaskah_ci.pipeline.source import PipelineConfig, source_for
from namaskah_ci.pipeline.specs import JobSpec, Pipeline
from namaskah_ci.steps.results import CANCELLED, SUCCESS, Results, worst_status

PLACEHOLDER = "(the pipeline file's jobs)"  # Trigger wants a name at config time; run() never uses it


def job_properties(job: JobSpec, revision: str, origin: str, pull: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a job build is triggered with; `pull`: the pipeline's pull request properties."""
    return {
        names.PROP_JOB: job.to_dict(),
        names.PROP_JOB_REVISION: revision,
        names.PROP_STATUS_CONTEXT: job.context,
        names.PROP_PIPELINE_FILE: origin,
        **(pull or {}),
    }


class _PipelineTrigger(Trigger):
    def __init__(
        self,
        disabled: tuple[str, ...] = (),
        reuse: ReuseSetup | None = None,
        config: PipelineConfig | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("updateSourceStamp", False)
        super().__init__(schedulerNames=[PLACEHOLDER], **kwargs)
        self.disabled = tuple(disabled)
        self.reuse = reuse
        self.config = config
        self.reused: dict[str, dict[str, Any]] = {}  # builder -> the record of the build it reuses

    def selected_jobs(self) -> list[JobSpec]:
        raise NotImplementedError

    def reuse_off(self) -> str:
        """Why this pipeline reuses nothing ('' when it may)."""
        if self.reuse is None or self.config is None:
            return "reuse is not set up for this step: every job runs"
        if not self.reuse.enabled:
            return "reuse is off ([pipeline] reuse = false): every job runs"
        if self.getProperty(names.PROP_RUN_EVERYTHING):
            return "forced with 'run everything': every job runs"
        return ""

    @defer.inlineCallbacks
    def reuse_properties(
        self,
        job: JobSpec,
        revision: str,
        store: ReuseStore,
        setup: ReuseSetup,
        config: PipelineConfig,
        history: str | Exception = "",
    ) -> Generator[Any, Any, tuple[dict[str, Any], str]]:
        """(properties, log line): the job's reuse key, and the build it reuses if one matches.
        `history`: `reuse.history_facts` for the pipeline's `history: full` jobs (or why it failed)."""
        try:
            facts = ""
            if job.history == "full":
                if isinstance(history, Exception):
                    raise history
                facts = history
            inputs = yield source_for(self.master, config).inputs_digest(revision, key_patterns(job.to_dict()))
            runtime = yield runtime_facts(setup, job)
            key = reuse_key(job.to_dict(), inputs, runtime, facts)
            record = yield store.lookup(key)
        except Exception as exc:  # reuse only saves time: a job whose key cannot be made runs
            log.err(exc, f"reuse: no key for {job.builder}")  # type: ignore[no-untyped-call]  # Twisted's log.err is unannotated
            return {}, f"{job.builder}: runs (no reuse key: {str(exc)[:200]})"
        what = f"{len(job.inputs)} input pattern(s)" if job.inputs is not None else "the whole tree"
        if job.history == "full":
            what += ", the revision's history and every branch and tag"
        if record is None:
            return {names.PROP_REUSE_KEY: key}, f"{job.builder}: runs (key {key[:12]}, {what})"
        self.reused[job.builder] = record
        line = f"{job.builder}: {reuse_summary(record)} (key {key[:12]}, {what})"
        return {names.PROP_REUSE_KEY: key, names.PROP_REUSED: record}, line

    @defer.inlineCallbacks
    def getSchedulersAndProperties(self) -> Generator[Any, Any, list[dict[str, Any]]]:
        revision = self.getProperty("revision")
        origin = self.getProperty(names.PROP_PIPELINE_FILE) or ""
        jobs = self.selected_jobs()
        extra: list[tuple[dict[str, Any], str]] = [({}, "")] * len(jobs)
        off = self.reuse_off()
        setup, config = self.reuse, self.config
        if jobs and not off and setup is not None and config is not None:  # (not off: both are set)
            store = ReuseStore(self.master)
            history: str | Exception = ""
            if any(job.history == "full" for job in jobs):  # listed once, for every job that reads it
                try:
                    history = yield history_facts(config.repo_url, revision)
                except Exception as exc:  # those jobs run
                    history = exc
            extra = yield defer.gatherResults(
                [self.reuse_properties(job, revision, store, setup, config, history) for job in jobs],
                consumeErrors=True,
            )
        if jobs:
            lines = [line for _, line in extra] if not off else [off]
            yield self.addCompleteLog("reuse", "\n".join(lines) + "\n")
        pull = {name: self.getProperty(name) for name in names.PR_PROPERTIES if self.getProperty(name) is not None}
        return [
            {
                "sched_name": names.check_scheduler_name(job.builder),
                "props_to_set": {**job_properties(job, revision, origin, pull), **props},
                "unimportant": False,
            }
            for job, (props, _) in zip(jobs, extra, strict=True)
        ]

    def prepareSourcestampListForTrigger(self) -> list[dict[str, Any]]:
        """The jobs build the pinned revision (a forced pipeline of a branch has none in its stamp)."""
        stamps: list[dict[str, Any]] = super().prepareSourcestampListForTrigger()
        revision = self.getProperty("revision")
        for stamp in stamps:
            if revision and not stamp.get("revision"):
                stamp["revision"] = revision
        return stamps

    def pipeline(self) -> Pipeline | None:
        pipeline: Pipeline | None = getattr(self.build, "namaskah_pipeline", None)
        return pipeline

    def jobs_branch(self) -> str | None:
        """What the jobs' `branches:` match: the build's branch, a pull request's base."""
        branch: str | None = names.jobs_branch(self.getProperty("branch"), self.getProperty(names.PROP_PR_BASE))
        return branch


class FanOut(_PipelineTrigger):
    """Trigger the job builders of the verdict in parallel and wait for all of them."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("waitForFinish", True)
        kwargs.setdefault("name", "checks")
        super().__init__(**kwargs)
        self.check_results: dict[str, str] = {}
        self.empty = False

    def selected_jobs(self) -> list[JobSpec]:
        pipeline = self.pipeline()
        if pipeline is None:
            return []
        branch = self.jobs_branch()
        skip = set(self.disabled) | set(self.kept())
        return [job for job in pipeline.verdict_jobs(branch) if job.builder not in skip]

    def kept(self) -> dict[str, str]:
        """A re-run of failed jobs (triggers/rerun.py): the checks of the earlier build it keeps, {builder: result}."""
        kept = self.getProperty(names.PROP_RERUN_KEPT)
        return dict(kept) if isinstance(kept, dict) else {}

    @defer.inlineCallbacks
    def run(self) -> Generator[Any, Any, int]:
        if not self.selected_jobs() and self.kept():
            kept: int = yield self.keep_only()
            return kept
        if not self.selected_jobs():
            self.empty = True
            self.setProperty(names.PROP_CHECK_RESULTS, {}, "FanOut")
            return SUCCESS
        result = yield super().run()
        return worst_status(result, overall_result(self.kept()))  # a re-run: the kept checks count too

    @defer.inlineCallbacks
    def addBuildUrls(self, rclist: list[tuple[bool, Any]]) -> Generator[Any, Any, None]:
        yield super().addBuildUrls(rclist)
        results: dict[str, int] = {}
        for was_cb, outcome in rclist:
            if not was_cb or not isinstance(outcome, tuple):
                continue
            _, brids = outcome
            for builderid, brid in brids.items():
                builds = yield self.master.db.builds.getBuilds(buildrequestid=brid)
                for build in builds:
                    builder = yield self.master.data.get(("builders", build.builderid))
                    name = builder["name"]
                    # a retried build request has several builds: the last one counts
                    results[name] = build.results if build.results is not None else SUCCESS
                if not builds:
                    # cancelled before a build started: the check did not pass
                    request = yield self.master.db.buildrequests.getBuildRequest(brid)
                    builder = yield self.master.data.get(("builders", builderid))
                    known = request is not None and request.results in range(len(Results))
                    results[builder["name"]] = request.results if known else CANCELLED
        merged = {**self.kept(), **{name: Results[result] for name, result in results.items()}}
        self.check_results = dict(sorted(merged.items()))
        self.setProperty(names.PROP_CHECK_RESULTS, self.check_results, "FanOut")
        self.updateSummary()

    @defer.inlineCallbacks
    def keep_only(self) -> Generator[Any, Any, int]:
        """A re-run whose failed jobs the file no longer has on this branch: the kept results stand."""
        self.check_results = dict(sorted(self.kept().items()))
        self.setProperty(names.PROP_CHECK_RESULTS, self.check_results, "FanOut")
        yield self.addCompleteLog("reuse", "nothing to re-run: every check of this revision's file passed before\n")
        self.updateSummary()
        return overall_result(self.check_results)

    def getResultSummary(self) -> dict[str, str]:
        if self.ended:
            return {"step": "interrupted"}
        if self.empty:
            return {"step": "no checks for this branch in the pipeline file"}
        if not self.check_results:
            summary: dict[str, str] = super().getResultSummary()
            return summary
        text = ", ".join(f"{name}: {result}" for name, result in self.check_results.items())
        build = checks_headline(self.check_results)
        reused = [name for name in self.check_results if name in self.reused]
        if reused:
            text += f" ({len(reused)} reused)"
        if self.kept():
            text += f" (re-run of #{self.getProperty(names.PROP_RERUN_OF)}: {len(self.kept())} kept)"
        return {"step": text, "build": build}


class StartAnalysis(_PipelineTrigger):
    """Start the jobs outside the verdict that run on this branch (not waited for)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("name", "analysis")
        kwargs.setdefault("waitForFinish", False)
        kwargs.setdefault("alwaysRun", True)
        super().__init__(**kwargs)

    def selected_jobs(self) -> list[JobSpec]:
        pipeline = self.pipeline()
        return pipeline.analysis_jobs(self.jobs_branch()) if pipeline is not None else []

    @defer.inlineCallbacks
    def run(self) -> Generator[Any, Any, int]:
        jobs = self.selected_jobs()
        if not jobs:
            self.descriptionDone = "none on this branch"
            return SUCCESS
        self.descriptionDone = f"started {', '.join(job.builder for job in jobs)}"
        result: int = yield super().run()
        return result

    def getResultSummary(self) -> dict[str, str]:
        return {"step": self.descriptionDone if isinstance(self.descriptionDone, str) else "analysis"}


def checks_headline(check_results: dict[str, str]) -> str:
    """The pipeline's one line: "failed: a; warnings: b", "all checks passed (warnings: b)" (a job
    that ended WARNINGS passed with warnings: it is not listed as failed)."""
    failed = [name for name, result in check_results.items() if result not in ("success", "warnings")]
    warned = [name for name, result in check_results.items() if result == "warnings"]
    warnings = f"warnings: {', '.join(warned)}" if warned else ""
    if failed:
        return "; ".join(part for part in (f"failed: {', '.join(failed)}", warnings) if part)
    return f"all checks passed ({warnings})" if warned else "all checks passed"


def overall_result(check_results: dict[str, str]) -> int:
    """The worst result among named check results (SUCCESS when there are none)."""
    overall = SUCCESS
    for name in check_results.values():
        overall = worst_status(overall, Results.index(name))
    return overall
