"""PublishReports: upload each declared report (file or directory) under its own path, link it, read what
it says (coverage percent, JUnit and SARIF counts), enforce `[checks] coverage_min`, and say which
declared reports the job did not write."""

from __future__ import annotations

import os
import shutil
import tempfile

from twisted.internet import defer
from twisted.trial import unittest

from buildbot.plugins import util
from buildbot.process import remotetransfer
from buildbot.process.results import FAILURE, SUCCESS, WARNINGS
from buildbot.test.reactor import TestReactorMixin
from buildbot.test.steps import ExpectRemoteRef, ExpectStat, ExpectUploadDirectory, ExpectUploadFile, TestBuildStepMixin

from namaskah_ci.pipeline import ReportSpec
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
