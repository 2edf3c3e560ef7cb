"""The `pipeline` builder's fan-out: trigger every check, wait, report each one's result.

`FanOut` is a stock `Trigger` that also remembers which builder ended with which
result. It sets the build property `check_results` ({builder: result name}) for
the deploy gate and shows every check's result in its summary, so the pipeline
build page answers "what failed" without opening each check.
"""

from __future__ import annotations

from twisted.internet import defer

from buildbot.process.results import CANCELLED, SUCCESS, Results, worst_status
from buildbot.steps.trigger import Trigger


class FanOut(Trigger):
    """Trigger the check schedulers in parallel and wait for all of them."""

    def __init__(self, **kwargs):
        kwargs.setdefault("waitForFinish", True)
        kwargs.setdefault("updateSourceStamp", False)
        kwargs.setdefault("name", "checks")
        super().__init__(**kwargs)
        self.check_results: dict[str, str] = {}

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
        self.setProperty("check_results", self.check_results, "FanOut")
        self.updateSummary()

    def getResultSummary(self):
        if self.ended:
            return {"step": "interrupted"}
        if not self.check_results:
            return super().getResultSummary()
        text = ", ".join(f"{name}: {result}" for name, result in self.check_results.items())
        failed = [name for name, result in self.check_results.items() if result != "success"]
        build = f"failed: {', '.join(failed)}" if failed else "all checks passed"
        return {"step": text, "build": build}


def overall_result(check_results: dict[str, str]) -> int:
    """The worst result among named check results (SUCCESS when there are none)."""
    overall = SUCCESS
    for name in check_results.values():
        overall = worst_status(overall, Results.index(name))
    return overall
