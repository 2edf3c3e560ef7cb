"""Upload the reports a job declares (`reports:` in the pipeline file) and link each from the build.

Each report (a file or a directory, relative to the checkout) lands in
`<master basedir>/reports/<builder>/<build number>/<its path>`, is served by
the web UI's "reports" dashboard (`www/config.py`) and removed after the retention
period (`reports/janitor.py`). The step always runs (a failed test run's JUnit report
matters most). A `coverage` report sets the build property `coverage`
(percent) and, when the job's steps passed, fails the job under its floor (the
report's own `min:`, else `[checks] coverage_min`), or when it was not written at all. Another declared report
that is missing makes the step warn; JUnit and SARIF counts go in the summary.
A job's reports together take at most `[limits] report_bytes` and
`report_files` on the master (`report_limits.py`): a report over either is
not stored, and the step warns naming the limit.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Generator
from typing import Any, ClassVar

from buildbot.process import remotecommand
from buildbot.steps.transfer import MultipleFileUpload, makeStatusRemoteCommand
from twisted.internet import defer, threads

from namaskah_ci import names
from namaskah_ci.pipeline.specs import ReportSpec
from namaskah_ci.reports import kinds as report_kinds
from namaskah_ci.steps.report_limits import LimitedDirectoryWriter, LimitedFileWriter, ReportBudget
from namaskah_ci.steps.results import FAILURE, SUCCESS, WARNINGS


def reports_url(buildbot_url: str, separate: str = "") -> str:
    """Where a build links its reports: `[www] reports_url` (another origin serving the reports
    directory, checked by `www.separate_reports_url`) when set, else the web UI's reports dashboard."""
    if separate:
        return separate.rstrip("/") + "/"
    return f"{buildbot_url}plugins/wsgi_dashboards/reports/"


class PublishReports(MultipleFileUpload):
    """Upload each declared report, keep its relative path, and check what it says."""

    renderables: ClassVar[list[str]] = ["reports_root"]

    def __init__(
        self,
        reports_root: Any,  # a renderable: the build's own reports directory
        base_url: str,
        reports: tuple[ReportSpec, ...],
        coverage_min: int = 0,
        max_bytes: int = 0,
        max_files: int = 0,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("name", "publish reports")
        kwargs.setdefault("alwaysRun", True)
        super().__init__(workersrcs=[r.path for r in reports], masterdest=".", **kwargs)
        self.reports_root = reports_root
        self.base_url = base_url
        self.declared = tuple(reports)
        self.coverage_min = coverage_min
        self.max_bytes = max_bytes  # [limits] report_bytes (0: no limit)
        self.max_files = max_files  # [limits] report_files
        self.summary_text = ""

    def floor(self, report: ReportSpec) -> tuple[int, str]:
        """The coverage floor of `report` and where it came from."""
        return report_kinds.coverage_floor(report.min, self.coverage_min)

    @defer.inlineCallbacks
    def _upload(
        self, kind: str, source: str, destination: str, budget: ReportBudget
    ) -> Generator[Any, Any, tuple[int, str]]:
        """Buildbot's uploadFile / uploadDirectory with bounded writers: (result, refusal or '')."""
        directory = kind == "dir"
        writer: LimitedDirectoryWriter | LimitedFileWriter
        args: dict[str, Any]
        if directory:
            writer = LimitedDirectoryWriter(destination, budget, self.compress, 0o600)
            args = {"compress": self.compress}
        else:
            writer = LimitedFileWriter(destination, budget.bytes_left, self.mode)
            args = {"keepstamp": self.keepstamp}
        args.update(
            workdir=self.workdir,
            writer=writer,
            maxsize=budget.worker_maxsize(directory),
            blocksize=self.blocksize,
            workersrc=source,
        )
        cmd = makeStatusRemoteCommand(self, "uploadDirectory" if directory else "uploadFile", args)
        result: int = yield self.runTransferCommand(cmd, writer)
        if isinstance(writer, LimitedDirectoryWriter) and writer.unpacked is not None:
            yield writer.unpacked
        refused: str = "bytes" if writer.overflow else getattr(writer, "refused", "")
        if refused:
            # whatever the worker said of it: not kept (Twisted's deferToThread is unannotated)
            yield threads.deferToThread(writer.purge)  # type: ignore[no-untyped-call]
            return result, budget.refusal(source, refused) if refused in ("bytes", "files") else refused
        if result == SUCCESS:
            budget.spend(*(writer.stored if isinstance(writer, LimitedDirectoryWriter) else (writer.received, 1)))
        return result, ""

    @defer.inlineCallbacks
    def _kind_of(self, path: str) -> Generator[Any, Any, str | None]:
        """ "dir", "file" or None (missing, or neither)."""
        cmd = remotecommand.RemoteCommand("stat", {"file": path, "workdir": self.workdir, "logEnviron": False})
        yield self.runCommand(cmd)
        if cmd.rc != 0:
            return None
        mode: int = cmd.updates["stat"][-1][stat.ST_MODE]
        return "dir" if stat.S_ISDIR(mode) else ("file" if stat.S_ISREG(mode) else None)

    @defer.inlineCallbacks
    def run(self) -> Generator[Any, Any, int]:
        self.stdio_log = yield self.addLog("stdio")
        steps_passed = self.build.results == SUCCESS
        relative = os.path.join(self.getProperty("buildername"), str(self.getProperty("buildnumber")))
        index = f"{self.base_url}{relative}/"
        published: list[ReportSpec] = []
        missing: list[ReportSpec] = []
        notes: list[str] = []
        failures: list[str] = []
        skipped: list[str] = []
        budget = ReportBudget(self.max_bytes, self.max_files)
        for report in self.declared:
            kind = yield self._kind_of(report.path)
            destination = os.path.join(self.reports_root, report.path)
            if kind is None:
                missing.append(report)
                continue
            refusal = budget.refusal(report.path, "files") if budget.no_file_left() else ""
            if not refusal:
                # Twisted's deferToThread is unannotated
                yield threads.deferToThread(os.makedirs, os.path.dirname(destination), exist_ok=True)  # type: ignore[no-untyped-call]
                result, refusal = yield self._upload(kind, report.path, destination, budget)
            if refusal:
                skipped.append(refusal)
                yield self.stdio_log.addStdout(refusal + "\n")
                if report.kind == "coverage" and steps_passed and self.floor(report)[0] > 0:
                    failures.append(refusal)
                continue
            if result != SUCCESS:
                failures.append(f"{report.path}: upload failed")
                continue
            published.append(report)
            target = f"{index}{report.path}/" if kind == "dir" else f"{index}{report.path}"
            if kind == "dir" and report.kind == "html":
                target += "index.html"
            yield self.addURL(report.title, target)
            # Twisted's deferToThread is unannotated
            text, values = yield threads.deferToThread(report_kinds.describe, report.kind, destination)  # type: ignore[no-untyped-call]
            if text:
                notes.append(text)
                yield self.stdio_log.addStdout(f"{report.path}: {text}\n")
            for key, value in values.items():
                if value is not None:
                    self.setProperty(key, value, self.name)
            if report.kind == "coverage" and steps_passed:
                problem = report_kinds.coverage_verdict(values.get(names.PROP_COVERAGE), *self.floor(report))
                if problem:
                    failures.append(problem)
        if published:
            yield self.addURL("reports", index)
        for report in missing:
            yield self.stdio_log.addStdout(f"{report.path}: not written by the job\n")
            if report.kind == "coverage" and steps_passed and self.floor(report)[0] > 0:
                failures.append(f"coverage report {report.path} was not written")
        parts = failures + notes + [text for text in skipped if text not in failures]
        if missing:
            parts.append(f"not written: {', '.join(r.path for r in missing)}")
        self.summary_text = "; ".join(parts) or f"published {len(published)} report(s)"
        # what the reports found is the job's headline (e.g. "2 findings in 1a2b3c4d")
        self.build_text = "; ".join(failures + [n for n in notes if "finding" in n and not n.startswith("0 ")])
        if failures:
            return FAILURE
        return WARNINGS if skipped or (missing and steps_passed) else SUCCESS

    def getResultSummary(self) -> dict[str, str]:
        if self.summary_text:
            summary = {"step": self.summary_text}
            if getattr(self, "build_text", ""):
                summary["build"] = self.build_text
            return summary
        default: dict[str, str] = super().getResultSummary()
        return default
