"""FanOut: triggers every check of the revision's pipeline file (with its definition and the pinned
revision), waits, records each check's result in `check_results` and says in the build summary which
checks failed. Driven through the step harness with fake Triggerable schedulers, as Buildbot's own
Trigger tests do."""

from __future__ import annotations

from buildbot import interfaces
from buildbot.process.results import CANCELLED, EXCEPTION, FAILURE, SUCCESS, WARNINGS
from buildbot.test import fakedb
from buildbot.test.reactor import TestReactorMixin
from buildbot.test.steps import TestBuildStepMixin
from twisted.internet import defer
from twisted.trial import unittest
from zope.interface import implementer

from namaskah_ci import names
from namaskah_ci.jobs.reuse import ReuseSetup
from namaskah_ci.pipeline.model import load_pipeline
from namaskah_ci.pipeline.source import PipelineConfig
from namaskah_ci.steps.fanout import FanOut, StartAnalysis, overall_result

MASTER_ID = 9
WORKER_ID = 13


@implementer(interfaces.ITriggerableScheduler)
class FakeTriggerable:
    """Answers at once: (buildset id, {builderid: brid}) and (result, brids)."""

    def __init__(self, name: str, brids: dict[int, int], result: int | None = SUCCESS, error: Exception | None = None):
        self.name = name
        self.brids = brids
        self.result = result
        self.error = error
        self.triggered_with: tuple | None = None  # (waited_for, sourcestamps, parent_buildid)

    def trigger(self, waited_for, sourcestamps=None, set_props=None, parent_buildid=None, parent_relationship=None):
        self.triggered_with = (waited_for, sourcestamps, parent_buildid)
        self.properties = set_props
        results = defer.fail(self.error) if self.error else defer.succeed((self.result, self.brids))
        return defer.succeed((1000 + min(self.brids.values(), default=0), self.brids)), results


class FakeSchedulerManager:
    namedServices: dict


REVISION = "c0ffee" * 6 + "beef"
CONFIG = PipelineConfig("file:///nowhere", "/nowhere/poller", "/nowhere/mirror", "", "", "", "main")


def pipeline_of(checks, extra: str = ""):
    jobs = "".join(f"  {name}:\n    steps: [x]\n" for name in checks)
    return load_pipeline(f"version: 1\njobs:\n{jobs}{extra}", ".namaskah-ci.yml")


class FanOutTest(TestBuildStepMixin, TestReactorMixin, unittest.TestCase):
    def setUp(self):
        self.setup_test_reactor()
        return self.setup_test_build_step()

    @defer.inlineCallbacks
    def setup_checks(
        self,
        checks: dict[str, list[int | None]],
        errors: dict[str, Exception] | None = None,
        disabled: tuple = (),
        reuse: ReuseSetup | None = None,
        kept: dict | None = None,
    ):
        """checks: {builder name: [result of each build]} ([] = request cancelled before any build)."""
        errors = errors or {}
        step = FanOut(name="checks", disabled=disabled, reuse=reuse, config=CONFIG if reuse else None)
        yield self.setup_step(step)
        self.build.namaskah_pipeline = pipeline_of([*checks, *disabled, *(kept or {})])
        if kept:
            self.build.setProperty(names.PROP_RERUN_KEPT, kept, "Re-run failed jobs")
            self.build.setProperty(names.PROP_RERUN_OF, 4, "Re-run failed jobs")
        self.build.setProperty("revision", REVISION, "pipeline file")
        master = self.master
        master.config.buildbotURL = "http://ci.example/"
        master.scheduler_manager = FakeSchedulerManager()
        master.scheduler_manager.namedServices = {}
        self.build.conn = object()
        rows = [fakedb.Master(id=MASTER_ID), fakedb.Worker(id=WORKER_ID, name="w")]
        self.schedulers = {}
        for index, (name, builds) in enumerate(checks.items()):
            builderid, brid, bsid = 70 + index, 10 + index, 2000 + index
            final = builds[-1] if builds else CANCELLED
            rows += [
                fakedb.Builder(id=builderid, name=name),
                fakedb.Buildset(id=bsid, complete=1, results=final),
                fakedb.BuildRequest(id=brid, buildsetid=bsid, builderid=builderid, complete=1, results=final),
            ]
            for attempt, result in enumerate(builds):
                rows.append(
                    fakedb.Build(
                        id=3000 + 10 * index + attempt,
                        number=attempt + 1,
                        buildrequestid=brid,
                        builderid=builderid,
                        masterid=MASTER_ID,
                        workerid=WORKER_ID,
                        results=result,
                        complete_at=1304262223,
                    )
                )
            scheduler = FakeTriggerable(f"check-{name}", {builderid: brid}, final, errors.get(name))
            self.schedulers[name] = scheduler
            master.scheduler_manager.namedServices[scheduler.name] = scheduler
        yield master.db.insert_test_data(rows)
        return step

    @defer.inlineCallbacks
    def test_all_checks_pass(self):
        yield self.setup_checks({"test-py3.11": [SUCCESS], "lint": [SUCCESS]})
        self.expect_outcome(result=SUCCESS)
        self.expect_property("check_results", {"lint": "success", "test-py3.11": "success"}, "FanOut")
        self.expect_result_summary({"step": "lint: success, test-py3.11: success", "build": "all checks passed"})
        yield self.run_step()
        for name, scheduler in self.schedulers.items():
            assert scheduler.triggered_with is not None, f"{name} was not triggered"
            waited_for, _, parent = scheduler.triggered_with
            self.assertTrue(waited_for)
            self.assertEqual(parent, self.build.buildid)
            props = dict(scheduler.properties.asDict())
            self.assertEqual(props[names.PROP_JOB][0]["builder"], name)
            self.assertEqual(props[names.PROP_JOB_REVISION][0], REVISION)
        self.assertEqual(self.get_nth_step(0).check_results, {"lint": "success", "test-py3.11": "success"})

    @defer.inlineCallbacks
    def test_the_build_summary_names_the_failed_checks(self):
        yield self.setup_checks(
            {
                "test-py3.9": [SUCCESS],
                "lint": [FAILURE],
                "security": [WARNINGS],
                "integration": [SUCCESS],
            }
        )
        self.expect_outcome(result=FAILURE)
        self.expect_property(
            "check_results",
            {"integration": "success", "lint": "failure", "security": "warnings", "test-py3.9": "success"},
        )
        self.expect_result_summary(
            {
                "step": "integration: success, lint: failure, security: warnings, test-py3.9: success",
                "build": "failed: lint; warnings: security",
            }
        )
        self.expect_build_result_summary(
            {
                "step": "integration: success, lint: failure, security: warnings, test-py3.9: success",
                "build": "failed: lint; warnings: security",
            }
        )
        yield self.run_step()

    @defer.inlineCallbacks
    def test_a_check_that_ended_warnings_is_a_warning_not_a_failure(self):
        yield self.setup_checks({"lint": [SUCCESS], "migration-test": [WARNINGS]})
        self.expect_outcome(result=WARNINGS)
        self.expect_result_summary(
            {
                "step": "lint: success, migration-test: warnings",
                "build": "all checks passed (warnings: migration-test)",
            }
        )
        yield self.run_step()

    @defer.inlineCallbacks
    def test_a_retried_check_counts_its_last_build(self):
        yield self.setup_checks({"integration": [EXCEPTION, SUCCESS], "lint": [SUCCESS]})
        self.expect_outcome(result=SUCCESS)
        self.expect_property("check_results", {"integration": "success", "lint": "success"})
        yield self.run_step()

    @defer.inlineCallbacks
    def test_a_check_cancelled_before_it_started_is_not_reported_as_passed(self):
        yield self.setup_checks({"lint": [SUCCESS], "integration": []})
        self.expect_outcome(result=CANCELLED)
        self.expect_property("check_results", {"integration": "cancelled", "lint": "success"})
        self.expect_result_summary({"step": "integration: cancelled, lint: success", "build": "failed: integration"})
        yield self.run_step()

    @defer.inlineCallbacks
    def test_each_check_is_linked_from_the_step(self):
        yield self.setup_checks({"lint": [FAILURE]})
        self.expect_outcome(result=FAILURE)
        yield self.run_step()
        step = yield self.master.data.get(("steps", self.get_nth_step(0).stepid))
        names = [url["name"] for url in step["urls"]]
        self.assertIn("failure: lint #1", names)

    @defer.inlineCallbacks
    def test_disabled_checks_are_not_triggered(self):
        yield self.setup_checks({"lint": [SUCCESS]}, disabled=("security",))
        self.expect_outcome(result=SUCCESS)
        self.expect_property("check_results", {"lint": "success"})
        yield self.run_step()

    @defer.inlineCallbacks
    def test_a_job_without_a_builder_yet_is_an_exception(self):
        step = FanOut(name="checks")
        yield self.setup_step(step)
        self.build.namaskah_pipeline = pipeline_of(["missing"])
        self.master.scheduler_manager = FakeSchedulerManager()
        self.master.scheduler_manager.namedServices = {}
        self.expect_exception(ValueError)
        yield self.run_step()

    @defer.inlineCallbacks
    def test_no_checks_on_the_branch_is_a_success_saying_so(self):
        step = FanOut(name="checks")
        yield self.setup_step(step)
        self.build.setProperty("branch", "develop", "test")
        self.build.namaskah_pipeline = pipeline_of([], "  m:\n    branches: [main]\n    steps: [x]\n")
        self.expect_outcome(result=SUCCESS, state_string="no checks for this branch in the pipeline file")
        self.expect_property("check_results", {})
        yield self.run_step()

    @defer.inlineCallbacks
    def test_with_reuse_off_every_job_runs_without_a_key_and_the_log_says_why(self):
        yield self.setup_checks({"lint": [SUCCESS]}, reuse=ReuseSetup(enabled=False))
        self.expect_outcome(result=SUCCESS)
        self.expect_log_file("reuse", "reuse is off ([pipeline] reuse = false): every job runs\n")
        yield self.run_step()
        props = dict(self.schedulers["lint"].properties.asDict())
        self.assertNotIn(names.PROP_REUSE_KEY, props)
        self.assertNotIn(names.PROP_REUSED, props)

    @defer.inlineCallbacks
    def test_a_pipeline_forced_with_run_everything_reuses_nothing(self):
        yield self.setup_checks({"lint": [SUCCESS]}, reuse=ReuseSetup(enabled=True))
        self.build.setProperty(names.PROP_RUN_EVERYTHING, True, "Force Build Form")
        self.expect_outcome(result=SUCCESS)
        self.expect_log_file("reuse", "forced with 'run everything': every job runs\n")
        yield self.run_step()
        self.assertNotIn(names.PROP_REUSED, dict(self.schedulers["lint"].properties.asDict()))

    @defer.inlineCallbacks
    def test_a_rerun_triggers_only_the_failed_checks_and_keeps_the_others_results(self):
        yield self.setup_checks({"integration": [SUCCESS]}, kept={"lint": "success", "security": "warnings"})
        self.expect_outcome(result=WARNINGS)
        self.expect_property(
            "check_results", {"integration": "success", "lint": "success", "security": "warnings"}, "FanOut"
        )
        yield self.run_step()
        self.assertEqual(list(self.schedulers), ["integration"])
        self.assertEqual([job.builder for job in self.get_nth_step(0).selected_jobs()], ["integration"])
        self.assertIn("(re-run of #4: 2 kept)", self.get_nth_step(0).getResultSummary()["step"])

    def test_defaults(self):
        step = FanOut()
        self.assertEqual(step.name, "checks")
        self.assertTrue(step.waitForFinish)
        self.assertFalse(step.updateSourceStamp)
        analysis = StartAnalysis()
        self.assertFalse(analysis.waitForFinish)
        self.assertTrue(analysis.alwaysRun)

    def test_analysis_takes_the_jobs_outside_the_verdict_on_the_branch(self):
        pipeline = pipeline_of(["lint"], "  codeql:\n    verdict: false\n    branches: [main]\n    steps: [x]\n")

        class Probe(StartAnalysis):
            branch = "main"

            def pipeline(self):
                return pipeline

            def getProperty(self, name, default=None):
                return self.branch if name == "branch" else default

        for branch, expected in (("main", ["codeql"]), ("develop", [])):
            Probe.branch = branch
            self.assertEqual([job.builder for job in Probe().selected_jobs()], expected)


class OverallResultTest(unittest.TestCase):
    def test_worst_of_the_named_results(self):
        self.assertEqual(overall_result({}), SUCCESS)
        self.assertEqual(overall_result({"a": "success", "b": "skipped"}), SUCCESS)
        self.assertEqual(overall_result({"a": "success", "b": "warnings"}), WARNINGS)
        self.assertEqual(overall_result({"a": "warnings", "b": "failure", "c": "success"}), FAILURE)
        self.assertEqual(overall_result({"a": "failure", "b": "exception"}), EXCEPTION)
        self.assertEqual(overall_result({"a": "cancelled", "b": "failure"}), CANCELLED)
