"""PublishReports: skip when a job wrote no reports; otherwise upload them and link the index and each
declared report that exists."""

from __future__ import annotations

import os
import shutil
import tempfile

from twisted.internet import defer
from twisted.trial import unittest

from buildbot.plugins import util
from buildbot.process import remotetransfer
from buildbot.process.results import FAILURE, SKIPPED, SUCCESS
from buildbot.test.reactor import TestReactorMixin
from buildbot.test.steps import ExpectRemoteRef, ExpectStat, ExpectUploadDirectory, TestBuildStepMixin

from namaskah_ci.jobs import Report
from namaskah_ci.steps.reports import PublishReports, reports_url

BASE = reports_url("http://ci.example/")
DECLARED = (
    Report("coverage XML", "coverage.xml"),
    Report("coverage HTML", "htmlcov/index.html"),
    Report("JUnit XML", "junit.xml"),
)


class PublishReportsTest(TestBuildStepMixin, TestReactorMixin, unittest.TestCase):
    def setUp(self):
        self.setup_test_reactor()
        self.root = tempfile.mkdtemp(prefix="reports-")
        self.addCleanup(shutil.rmtree, self.root, True)
        return self.setup_test_build_step()

    @defer.inlineCallbacks
    def setup_publish(self):
        step = PublishReports(
            reports_root=util.Interpolate(f"{self.root}/%(prop:buildername)s/%(prop:buildnumber)s"),
            base_url=BASE,
            reports=DECLARED,
            name="publish",
        )
        yield self.setup_step(step)
        self.build.setProperty("buildername", "test-py3.11", "Builder")
        self.build.setProperty("buildnumber", 7, "Build")
        return step

    @defer.inlineCallbacks
    def urls(self):
        step = yield self.master.data.get(("steps", self.get_nth_step(0).stepid))
        return [(url["name"], url["url"]) for url in step["urls"]]

    def expect_upload(self, members: dict[str, str], rc: int = 0):
        return ExpectUploadDirectory(
            workersrc="reports",
            workdir="wkdir",
            blocksize=16384,
            maxsize=None,
            compress=None,
            writer=ExpectRemoteRef(remotetransfer.DirectoryWriter),
        ).upload_tar_file("reports.tar", members).exit(rc)

    def test_defaults(self):
        step = PublishReports(reports_root="/x", base_url=BASE, reports=DECLARED)
        self.assertEqual(step.name, "publish reports")
        self.assertTrue(step.alwaysRun)
        self.assertFalse(step.flunkOnFailure)
        self.assertTrue(step.warnOnFailure)
        self.assertEqual(BASE, "http://ci.example/plugins/wsgi_dashboards/reports/")

    @defer.inlineCallbacks
    def test_skipped_when_no_reports_directory(self):
        yield self.setup_publish()
        self.expect_commands(ExpectStat(file="wkdir/reports", log_environ=False).exit(1))
        self.expect_outcome(result=SKIPPED, state_string="no reports written (skipped)")
        yield self.run_step()
        self.assertEqual((yield self.urls()), [])
        self.assertEqual(os.listdir(self.root), [])

    @defer.inlineCallbacks
    def test_uploads_and_links_the_reports_that_exist(self):
        yield self.setup_publish()
        self.expect_commands(
            ExpectStat(file="wkdir/reports", log_environ=False).exit(0),
            self.expect_upload({"coverage.xml": "<coverage/>", "htmlcov/index.html": "<html/>"}),
        )
        self.expect_outcome(result=SUCCESS, state_string="published 2 report(s)")
        yield self.run_step()
        index = f"{BASE}test-py3.11/7/"
        self.assertEqual(
            sorted((yield self.urls())),
            sorted([
                ("reports", index),
                ("coverage XML", f"{index}coverage.xml"),
                ("coverage HTML", f"{index}htmlcov/index.html"),
            ]),
        )
        dest = os.path.join(self.root, "test-py3.11", "7")
        self.assertTrue(os.path.isfile(os.path.join(dest, "coverage.xml")))  # (the fake tar has empty members)
        self.assertTrue(os.path.isfile(os.path.join(dest, "htmlcov", "index.html")))
        self.assertFalse(os.path.exists(os.path.join(dest, "junit.xml")))

    @defer.inlineCallbacks
    def test_only_the_index_when_no_declared_report_was_written(self):
        yield self.setup_publish()
        self.expect_commands(
            ExpectStat(file="wkdir/reports", log_environ=False).exit(0),
            self.expect_upload({"other.txt": "x"}),
        )
        self.expect_outcome(result=SUCCESS)
        yield self.run_step()
        self.assertEqual((yield self.urls()), [("reports", f"{BASE}test-py3.11/7/")])

    @defer.inlineCallbacks
    def test_a_failed_upload_links_nothing(self):
        yield self.setup_publish()
        self.expect_commands(
            ExpectStat(file="wkdir/reports", log_environ=False).exit(0),
            self.expect_upload({"coverage.xml": "<coverage/>"}, rc=1),
        )
        self.expect_outcome(result=FAILURE)
        yield self.run_step()
        self.assertEqual((yield self.urls()), [])
