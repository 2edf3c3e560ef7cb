"""PublishReports: upload each declared report (file or directory) under its own path, link it, read what
it says (coverage percent, JUnit and SARIF counts), enforce `[checks] coverage_min`, and say which
declared reports the job did not write; a job's reports together never take more than `[limits]
report_bytes` / `report_files` on the master, whatever the worker sends."""

from __future__ import annotations

import dataclasses
import io
import os
import shutil
import tarfile
import tempfile

from buildbot.plugins import util
from buildbot.process import remotetransfer
from buildbot.process.results import FAILURE, SUCCESS, WARNINGS
from buildbot.test.reactor import TestReactorMixin
from buildbot.test.steps import ExpectRemoteRef, ExpectStat, ExpectUploadDirectory, ExpectUploadFile, TestBuildStepMixin
from twisted.internet import defer
from twisted.trial import unittest

from namaskah_ci.pipeline.specs import ReportSpec
from namaskah_ci.steps.reports import PublishReports, reports_url

BASE = reports_url("http://ci.example/")
COVERAGE = ReportSpec("reports/coverage.xml", "coverage", "coverage XML")
JUNIT = ReportSpec("reports/junit.xml", "junit", "JUnit XML")
HTML = ReportSpec("reports/htmlcov", "html", "coverage HTML")
COBERTURA = '<?xml version="1.0" ?><coverage line-rate="{rate}" version="7"></coverage>'
JUNIT_XML = (
    '<testsuites><testsuite tests="12" failures="1" errors="1" skipped="2"/>'
    '<testsuite tests="3" failures="0" errors="0" skipped="0"/></testsuites>'
)


class PublishReportsTest(TestBuildStepMixin, TestReactorMixin, unittest.TestCase):
    def setUp(self):
        self.setup_test_reactor()
        self.root = tempfile.mkdtemp(prefix="reports-")
        self.addCleanup(shutil.rmtree, self.root, True)
        return self.setup_test_build_step()

    @defer.inlineCallbacks
    def setup_publish(self, *reports: ReportSpec, coverage_min: int = 40, build_results=SUCCESS):
        step = PublishReports(
            reports_root=util.Interpolate(f"{self.root}/%(prop:buildername)s/%(prop:buildnumber)s"),
            base_url=BASE,
            reports=reports,
            coverage_min=coverage_min,
            name="publish",
        )
        yield self.setup_step(step)
        self.build.results = build_results
        self.build.setProperty("buildername", "test-py3.11", "Builder")
        self.build.setProperty("buildnumber", 7, "Build")

    @defer.inlineCallbacks
    def urls(self):
        step = yield self.master.data.get(("steps", self.get_nth_step(0).stepid))
        return sorted((url["name"], url["url"]) for url in step["urls"])

    def file(self, report: ReportSpec, content: str):
        return [
            ExpectStat(file=report.path, workdir="wkdir", log_environ=False).stat_file().exit(0),
            ExpectUploadFile(
                workersrc=report.path,
                workdir="wkdir",
                blocksize=16384,
                maxsize=None,
                keepstamp=False,
                writer=ExpectRemoteRef(remotetransfer.FileWriter),
            )
            .upload_string(content)
            .exit(0),
        ]

    def missing(self, report: ReportSpec):
        return [ExpectStat(file=report.path, workdir="wkdir", log_environ=False).exit(1)]

    def test_defaults(self):
        step = PublishReports(reports_root="/x", base_url=BASE, reports=(JUNIT,))
        assert step.name == "publish reports" and step.alwaysRun
        assert BASE == "http://ci.example/plugins/wsgi_dashboards/reports/"

    @defer.inlineCallbacks
    def test_coverage_and_junit_are_uploaded_under_their_paths_read_and_linked(self):
        yield self.setup_publish(COVERAGE, JUNIT)
        self.expect_commands(*self.file(COVERAGE, COBERTURA.format(rate="0.8512")), *self.file(JUNIT, JUNIT_XML))
        self.expect_outcome(result=SUCCESS, state_string="coverage 85.12%; 15 tests, 2 failed, 2 skipped")
        self.expect_property("coverage", 85.12)
        self.expect_property("junit", {"tests": 15, "failures": 1, "errors": 1, "skipped": 2})
        yield self.run_step()
        index = f"{BASE}test-py3.11/7/"
        assert (yield self.urls()) == sorted(
            [
                ("reports", index),
                ("coverage XML", f"{index}reports/coverage.xml"),
                ("JUnit XML", f"{index}reports/junit.xml"),
            ]
        )
        assert os.path.isfile(os.path.join(self.root, "test-py3.11", "7", "reports", "junit.xml"))

    @defer.inlineCallbacks
    def test_coverage_under_the_floor_fails_the_job(self):
        yield self.setup_publish(COVERAGE, coverage_min=40)
        self.expect_commands(*self.file(COVERAGE, COBERTURA.format(rate="0.35")))
        self.expect_outcome(
            result=FAILURE, state_string=("coverage 35.0% is under [checks] coverage_min (40%); coverage 35.0%")
        )
        yield self.run_step()

    @defer.inlineCallbacks
    def test_a_reports_own_floor_beats_the_masters_default(self):
        """`{kind: coverage, min: 15}`: 28 % passes where [checks] coverage_min (40) would fail."""
        own = dataclasses.replace(COVERAGE, min=15)
        yield self.setup_publish(own, coverage_min=40)
        self.expect_commands(*self.file(own, COBERTURA.format(rate="0.2802")))
        self.expect_outcome(result=SUCCESS, state_string="coverage 28.02%")
        yield self.run_step()

    @defer.inlineCallbacks
    def test_under_the_reports_own_floor_the_failure_names_it(self):
        own = dataclasses.replace(COVERAGE, min=15)
        yield self.setup_publish(own, coverage_min=40)
        self.expect_commands(*self.file(own, COBERTURA.format(rate="0.12")))
        self.expect_outcome(
            result=FAILURE, state_string="coverage 12.0% is under the report's min (15%); coverage 12.0%"
        )
        yield self.run_step()

    @defer.inlineCallbacks
    def test_a_missing_coverage_report_fails_a_job_whose_steps_passed(self):
        yield self.setup_publish(COVERAGE, JUNIT)
        self.expect_commands(*self.missing(COVERAGE), *self.file(JUNIT, JUNIT_XML))
        self.expect_outcome(result=FAILURE)
        yield self.run_step()
        assert "coverage report reports/coverage.xml was not written" in self.get_nth_step(0).summary_text

    @defer.inlineCallbacks
    def test_another_missing_report_warns(self):
        yield self.setup_publish(JUNIT)
        self.expect_commands(*self.missing(JUNIT))
        self.expect_outcome(result=WARNINGS, state_string="not written: reports/junit.xml")
        yield self.run_step()
        assert (yield self.urls()) == []

    @defer.inlineCallbacks
    def test_after_a_failed_step_missing_reports_add_nothing(self):
        yield self.setup_publish(COVERAGE, JUNIT, build_results=FAILURE)
        self.expect_commands(*self.missing(COVERAGE), *self.file(JUNIT, JUNIT_XML))
        self.expect_outcome(result=SUCCESS)
        yield self.run_step()

    @defer.inlineCallbacks
    def test_an_html_directory_links_its_index(self):
        yield self.setup_publish(HTML)
        self.expect_commands(
            ExpectStat(file=HTML.path, workdir="wkdir", log_environ=False).stat_dir().exit(0),
            ExpectUploadDirectory(
                workersrc=HTML.path,
                workdir="wkdir",
                blocksize=16384,
                maxsize=None,
                compress=None,
                writer=ExpectRemoteRef(remotetransfer.DirectoryWriter),
            )
            .upload_tar_file("htmlcov.tar", {"index.html": "<html/>"})
            .exit(0),
        )
        self.expect_outcome(result=SUCCESS, state_string="published 1 report(s)")
        yield self.run_step()
        index = f"{BASE}test-py3.11/7/"
        assert (yield self.urls()) == [("coverage HTML", f"{index}reports/htmlcov/index.html"), ("reports", index)]


def tar_of(members: dict[str, bytes]) -> bytes:
    """A directory report as the worker sends it: a tar archive (the root entry first)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        root = tarfile.TarInfo("")
        root.type = tarfile.DIRTYPE
        archive.addfile(root)
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def sends(data: bytes, directory: bool = False):
    """A worker that sends `data` whatever the maxsize it was given (the master must bound it)."""

    def behavior(command):
        writer = command.args["writer"]
        writer.remote_write(data)
        if directory:
            writer.remote_unpack()
        else:
            writer.remote_close()

    return behavior


class ReportLimitsTest(TestBuildStepMixin, TestReactorMixin, unittest.TestCase):
    """`[limits] report_bytes` / `report_files` for a job's reports together, on the master."""

    BIG = ReportSpec("reports/big.json", "json", "JSON")
    setUp = PublishReportsTest.setUp
    urls = PublishReportsTest.urls

    @defer.inlineCallbacks
    def setup_limited(self, *reports: ReportSpec, max_bytes: int = 0, max_files: int = 0):
        step = PublishReports(
            reports_root=util.Interpolate(f"{self.root}/%(prop:buildername)s/%(prop:buildnumber)s"),
            base_url=BASE, reports=reports, max_bytes=max_bytes, max_files=max_files, name="publish",
        )  # fmt: skip
        yield self.setup_step(step)
        self.build.results = SUCCESS
        self.build.setProperty("buildername", "test-py3.11", "Builder")
        self.build.setProperty("buildnumber", 7, "Build")

    def stored(self) -> tuple[int, int]:
        size = entries = 0
        for directory, _dirs, files in os.walk(self.root):
            entries += len(files)
            size += sum(os.path.getsize(os.path.join(directory, name)) for name in files)
        return size, entries

    def upload_file(self, report: ReportSpec, maxsize, data: bytes, rc: int = 0):
        return [
            ExpectStat(file=report.path, workdir="wkdir", log_environ=False).stat_file().exit(0),
            ExpectUploadFile(workersrc=report.path, workdir="wkdir", blocksize=16384, maxsize=maxsize,
                             keepstamp=False, writer=ExpectRemoteRef(remotetransfer.FileWriter))
            .behavior(sends(data)).exit(rc),
        ]  # fmt: skip

    def upload_dir(self, report: ReportSpec, maxsize, members: dict[str, bytes]):
        return [
            ExpectStat(file=report.path, workdir="wkdir", log_environ=False).stat_dir().exit(0),
            ExpectUploadDirectory(workersrc=report.path, workdir="wkdir", blocksize=16384, maxsize=maxsize,
                                  compress=None, writer=ExpectRemoteRef(remotetransfer.DirectoryWriter))
            .behavior(sends(tar_of(members), directory=True)).exit(0),
        ]  # fmt: skip

    @defer.inlineCallbacks
    def test_a_file_over_what_is_left_is_not_stored_whatever_the_worker_says(self):
        yield self.setup_limited(JUNIT, self.BIG, max_bytes=1000)
        junit = JUNIT_XML.encode()
        self.expect_commands(
            *self.upload_file(JUNIT, 1001, junit),  # one byte more than is left: a file just as large fits
            *self.upload_file(self.BIG, 1001 - len(junit), b"{" * 5000, rc=0),  # more than asked, and rc 0
        )
        refusal = "report reports/big.json skipped: the job's reports exceed 1000 bytes ([limits] report_bytes)"
        self.expect_outcome(result=WARNINGS)
        yield self.run_step()
        assert refusal in self.get_nth_step(0).summary_text
        assert self.stored() == (len(junit), 1)  # the JUnit report only
        assert not os.path.exists(os.path.join(self.root, "test-py3.11", "7", "reports", "big.json"))

    @defer.inlineCallbacks
    def test_a_directory_with_too_many_files_is_not_unpacked(self):
        yield self.setup_limited(HTML, max_files=3)
        self.expect_commands(*self.upload_dir(HTML, None, {f"f{i}.html": b"x" for i in range(5)}))
        self.expect_outcome(result=WARNINGS)
        yield self.run_step()
        assert "report reports/htmlcov skipped: the job's reports exceed 3 files ([limits] report_files)" in (
            self.get_nth_step(0).summary_text
        )
        assert self.stored() == (0, 0)
        assert (yield self.urls()) == []

    @defer.inlineCallbacks
    def test_a_directory_whose_files_add_up_over_the_limit_is_not_unpacked(self):
        yield self.setup_limited(HTML, max_bytes=1 << 20, max_files=100)
        members = {"a.html": b"a" * (600 << 10), "b.html": b"b" * (600 << 10)}
        self.expect_commands(*self.upload_dir(HTML, (1 << 20) + 2048 * 101 + 20480, members))
        self.expect_outcome(result=WARNINGS)
        yield self.run_step()
        assert "report reports/htmlcov skipped: the job's reports exceed 1 MiB ([limits] report_bytes)" in (
            self.get_nth_step(0).summary_text
        )
        assert self.stored() == (0, 0)

    @defer.inlineCallbacks
    def test_what_fits_is_unpacked_and_counted(self):
        yield self.setup_limited(HTML, JUNIT, max_bytes=10_000, max_files=3)
        self.expect_commands(
            *self.upload_dir(HTML, 10_000 + 2048 * 4 + 20480, {"index.html": b"<html/>"}),
            # the root entry and index.html took two of three files; 7 bytes of 10000
            *self.upload_file(JUNIT, 10_000 - 7 + 1, JUNIT_XML.encode()),
        )
        self.expect_outcome(result=SUCCESS, state_string="15 tests, 2 failed, 2 skipped")
        yield self.run_step()
        assert self.stored() == (7 + len(JUNIT_XML), 2)
