"""Upload a job's `reports/` directory to the master and link each report from the build.

Reports land in `<master basedir>/reports/<builder>/<build number>/`, are
served by the web UI's "reports" dashboard (`www.py`) and removed after the
retention period by the janitor (`janitor.py`).
"""

from __future__ import annotations

import os

from twisted.internet import defer, threads

from buildbot.process import buildstep, remotecommand
from buildbot.steps.transfer import DirectoryUpload

from namaskah_ci.jobs import REPORTS_DIR, Report


def reports_url(buildbot_url: str) -> str:
    return f"{buildbot_url}plugins/wsgi_dashboards/reports/"


class PublishReports(DirectoryUpload):
    """A DirectoryUpload that links the index and each declared report that exists."""

    renderables = ["reports_root"]

    def __init__(self, reports_root, base_url: str, reports: tuple[Report, ...], **kwargs):
        kwargs.setdefault("name", "publish reports")
        kwargs.setdefault("alwaysRun", True)
        kwargs.setdefault("flunkOnFailure", False)
        kwargs.setdefault("warnOnFailure", True)
        super().__init__(workersrc=REPORTS_DIR, masterdest=reports_root, **kwargs)
        self.reports_root = reports_root
        self.base_url = base_url
        self.declared = reports

    @defer.inlineCallbacks
    def run(self):
        # a bare `stat` (no log of its own: the upload below owns the step's stdio log)
        stat = remotecommand.RemoteCommand(
            "stat", {"file": self.build.path_module.join(self.workdir, REPORTS_DIR), "logEnviron": False}
        )
        yield self.runCommand(stat)
        if stat.didFail():
            self.descriptionDone = "no reports written"
            return buildstep.SKIPPED
        result = yield super().run()
        if result != buildstep.SUCCESS:
            return result
        relative = os.path.join(self.getProperty("buildername"), str(self.getProperty("buildnumber")))
        index = f"{self.base_url}{relative}/"
        yield self.addURL("reports", index)
        present = yield threads.deferToThread(self._present, self.declared, self.reports_root)
        for report in present:
            yield self.addURL(report.title, f"{index}{report.path}")
        self.descriptionDone = f"published {len(present)} report(s)" if present else "no declared report written"
        return result

    @staticmethod
    def _present(reports: tuple[Report, ...], root: str) -> list[Report]:
        return [r for r in reports if os.path.exists(os.path.join(root, r.path))]
