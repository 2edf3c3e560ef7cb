"""The `pipeline` builder's fan-out: trigger every job of the revision's pipeline file, wait, report.

`FanOut` is a stock `Trigger` whose schedulers come from the model `LoadPipeline`
loaded (`check-<builder>` for each job of the verdict that runs on the branch,
minus `[checks] disabled`), each triggered with its job's definition
(`namaskah_job`) and the pinned revision, so the job builds run exactly what
that revision's file says. It sets the build property `check_results`
({builder: result name}) for the deploy gate and lists every job's result in
its summary. `StartAnalysis` starts the jobs outside the verdict (e.g. codeql)
once the checks ended, without waiting for them.
"""

from __future__ import annotations

from twisted.internet import defer

from buildbot.process.results import CANCELLED, SUCCESS, Results, worst_status
from buildbot.steps.trigger import Trigger

from namaskah_ci import names
from namaskah_ci.pipeline import JobSpec

PLACEHOLDER = "(the pipeline file's jobs)"  # Trigger wants a name at config time; run() never uses it


def job_properties(job: JobSpec, revision: str, origin: str) -> dict:
    return {
        names.PROP_JOB: job.to_dict(),
        names.PROP_JOB_REVISION: revision,
        names.PROP_STATUS_CONTEXT: job.context,
        names.PROP_PIPELINE_FILE: origin,
    }


class _PipelineTrigger(Trigger):
    def __init__(self, disabled: tuple[str, ...] = (), **kwargs):
        kwargs.setdefault("updateSourceStamp", False)
        super().__init__(schedulerNames=[PLACEHOLDER], **kwargs)
        self.disabled = tuple(disabled)

    def selected_jobs(self) -> list[JobSpec]:
        raise NotImplementedError

    def getSchedulersAndProperties(self):
        revision = self.getProperty("revision")
        origin = self.getProperty(names.PROP_PIPELINE_FILE) or ""
        return [
            {
                "sched_name": names.check_scheduler_name(job.builder),
                "props_to_set": job_properties(job, revision, origin),
                "unimportant": False,
            }
            for job in self.selected_jobs()
        ]

    def prepareSourcestampListForTrigger(self):
        """The jobs build the pinned revision (a forced pipeline of a branch has none in its stamp)."""
        stamps = super().prepareSourcestampListForTrigger()
        revision = self.getProperty("revision")
        for stamp in stamps:
            if revision and not stamp.get("revision"):
                stamp["revision"] = revision
        return stamps

    def pipeline(self):
        return getattr(self.build, "namaskah_pipeline", None)


class FanOut(_PipelineTrigger):
    """Trigger the job builders of the verdict in parallel and wait for all of them."""

    def __init__(self, **kwargs):
        kwargs.setdefault("waitForFinish", True)
        kwargs.setdefault("name", "checks")
        super().__init__(**kwargs)
        self.check_results: dict[str, str] = {}
        self.empty = False

    def selected_jobs(self) -> list[JobSpec]:
        pipeline = self.pipeline()
        if pipeline is None:
            return []
        branch = self.getProperty("branch")
        return [job for job in pipeline.verdict_jobs(branch) if job.builder not in self.disabled]

    @defer.inlineCallbacks
    def run(self):
        if not self.selected_jobs():
            self.empty = True
            self.setProperty(names.PROP_CHECK_RESULTS, {}, "FanOut")
            return SUCCESS
        result = yield super().run()
        return result

    @defer.inlineCallbacks
    def addBuildUrls(self, rclist):
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
        self.check_results = {name: Results[result] for name, result in sorted(results.items())}
        self.setProperty(names.PROP_CHECK_RESULTS, self.check_results, "FanOut")
        self.updateSummary()

    def getResultSummary(self):
        if self.ended:
            return {"step": "interrupted"}
        if self.empty:
            return {"step": "no checks for this branch in the pipeline file"}
        if not self.check_results:
            return super().getResultSummary()
        text = ", ".join(f"{name}: {result}" for name, result in self.check_results.items())
        failed = [name for name, result in self.check_results.items() if result != "success"]
        build = f"failed: {', '.join(failed)}" if failed else "all checks passed"
        return {"step": text, "build": build}


class StartAnalysis(_PipelineTrigger):
    """Start the jobs outside the verdict that run on this branch (not waited for)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("name", "analysis")
        kwargs.setdefault("waitForFinish", False)
        kwargs.setdefault("alwaysRun", True)
        super().__init__(**kwargs)

    def selected_jobs(self) -> list[JobSpec]:
        pipeline = self.pipeline()
        return pipeline.analysis_jobs(self.getProperty("branch")) if pipeline is not None else []

    @defer.inlineCallbacks
    def run(self):
        jobs = self.selected_jobs()
        if not jobs:
            self.descriptionDone = "none on this branch"
            return SUCCESS
        self.descriptionDone = f"started {', '.join(job.builder for job in jobs)}"
        result = yield super().run()
        return result

    def getResultSummary(self):
        return {"step": self.descriptionDone if isinstance(self.descriptionDone, str) else "analysis"}


def overall_result(check_results: dict[str, str]) -> int:
    """The worst result among named check results (SUCCESS when there are none)."""
    overall = SUCCESS
    for name in check_results.values():
        overall = worst_status(overall, Results.index(name))
    return overall
