"""The deploy gate: the pipeline's DeployGate and the deploy builders' VerifyPipelinePassed."""

from __future__ import annotations

from buildbot.process.results import FAILURE, SKIPPED, SUCCESS, WARNINGS
from buildbot.steps.trigger import Trigger
from buildbot.test import fakedb
from twisted.internet import defer
from twisted.trial import unittest

from deploy_steps import OLD, REV, DeployStepCase, make_target
from namaskah_ci.steps.deploy.gate import DeployGate, VerifyPipelinePassed, required_checks_verdict

REQUIRED = ["lint", "test-py3.11"]
ALL_GREEN = {"lint": "success", "test-py3.11": "success", "security": "failure"}
BRANCHES = {"main": "deploy-production-after-pipeline", "develop": "deploy-staging-after-pipeline"}


class VerdictTest(unittest.TestCase):
    def test_every_required_check_must_succeed(self):
        self.assertTrue(required_checks_verdict(ALL_GREEN, REQUIRED).passed)

    def test_failures_and_missing_checks_are_named(self):
        verdict = required_checks_verdict({"lint": "failure"}, REQUIRED)
        self.assertFalse(verdict.passed)
        self.assertEqual(verdict.reason, "lint: failure, test-py3.11 did not run")

    def test_warnings_or_cancelled_are_not_success(self):
        for result in ("warnings", "cancelled", "skipped", "exception"):
            self.assertFalse(required_checks_verdict({"lint": result, "test-py3.11": "success"}, REQUIRED).passed)

    def test_no_results_at_all(self):
        self.assertFalse(required_checks_verdict(None, REQUIRED).passed)


class DeployGateTest(DeployStepCase, unittest.TestCase):
    @defer.inlineCallbacks
    def run_gate(self, branch, check_results, revision=REV, expected=SKIPPED, **extra):
        triggered = []

        def fake_run(step):
            triggered.append(step.getSchedulersAndProperties())
            return defer.succeed(SUCCESS)

        self.patch(Trigger, "run", fake_run)
        props = {"branch": branch, "check_results": check_results, "buildnumber": 7, **extra}
        if revision:
            props["revision"] = revision
        self.setup_with(DeployGate(BRANCHES, REQUIRED, name="gate"), **props)
        self.expect_outcome(result=expected)
        yield self.run_step()
        return triggered

    @defer.inlineCallbacks
    def test_green_main_triggers_production(self):
        triggered = yield self.run_gate("main", ALL_GREEN, expected=SUCCESS)
        self.assertEqual(
            triggered,
            [
                [
                    {
                        "sched_name": "deploy-production-after-pipeline",
                        "props_to_set": {"gate_pipeline": "pipeline #7"},
                        "unimportant": False,
                    }
                ]
            ],
        )
        self.assertIn("deploy of 1234567 requested", self.get_nth_step(0).gate_summary)

    @defer.inlineCallbacks
    def test_green_develop_triggers_staging(self):
        triggered = yield self.run_gate("develop", ALL_GREEN, expected=SUCCESS)
        self.assertEqual(triggered[0][0]["sched_name"], "deploy-staging-after-pipeline")

    @defer.inlineCallbacks
    def test_other_branches_never_deploy(self):
        triggered = yield self.run_gate("feature/x", ALL_GREEN)
        self.assertEqual(triggered, [])
        self.assertEqual(self.get_nth_step(0).gate_summary, "branch feature/x does not deploy")

    @defer.inlineCallbacks
    def test_a_pull_request_never_deploys_even_green_into_main(self):
        triggered = yield self.run_gate("main", ALL_GREEN, pr_number=7, pr_base="main")
        self.assertEqual(triggered, [])
        self.assertEqual(self.get_nth_step(0).gate_summary, "pull request #7: pull requests never deploy")

    @defer.inlineCallbacks
    def test_a_failed_required_check_blocks(self):
        triggered = yield self.run_gate("main", {"lint": "failure", "test-py3.11": "success"})
        self.assertEqual(triggered, [])
        self.assertEqual(self.get_nth_step(0).gate_summary, "not deploying: lint: failure")

    @defer.inlineCallbacks
    def test_a_required_check_that_did_not_run_blocks(self):
        triggered = yield self.run_gate("main", {"lint": "success"})
        self.assertEqual(triggered, [])
        self.assertIn("test-py3.11 did not run", self.get_nth_step(0).gate_summary)

    @defer.inlineCallbacks
    def test_a_required_check_the_file_does_not_define_blocks_naming_it(self):
        triggered = yield self.run_gate(
            "main", {"lint": "success"}, pipeline_jobs=["lint"], pipeline_file=".namaskah-ci.yml at 1234567"
        )
        self.assertEqual(triggered, [])
        self.assertEqual(
            self.get_nth_step(0).gate_summary,
            "not deploying: test-py3.11 is not defined in .namaskah-ci.yml at 1234567",
        )

    @defer.inlineCallbacks
    def test_an_unusable_pipeline_file_never_deploys(self):
        triggered = yield self.run_gate("main", ALL_GREEN, pipeline_error=".namaskah-ci.yml:3: jobs: must not be empty")
        self.assertEqual(triggered, [])
        self.assertEqual(self.get_nth_step(0).gate_summary, "not deploying: the pipeline file is unusable")

    @defer.inlineCallbacks
    def test_no_pinned_revision_blocks(self):
        triggered = yield self.run_gate("main", ALL_GREEN, revision=None)
        self.assertEqual(triggered, [])

    @defer.inlineCallbacks
    def changes_on_main(self, *revisions):
        rows = []
        for index, revision in enumerate(revisions, start=1):
            rows += [
                fakedb.SourceStamp(id=80 + index, branch="main", revision=revision),
                fakedb.Change(changeid=index, branch="main", revision=revision, sourcestampid=80 + index),
            ]
        yield self.master.db.insert_test_data(rows)

    @defer.inlineCallbacks
    def test_a_green_rerun_of_the_newest_revision_deploys(self):
        yield self.changes_on_main(OLD, REV)
        triggered = yield self.run_gate("main", ALL_GREEN, expected=SUCCESS, rerun_of=4)
        self.assertEqual(len(triggered), 1)

    @defer.inlineCallbacks
    def test_a_rerun_of_a_revision_the_branch_moved_on_from_never_deploys(self):
        yield self.changes_on_main(OLD, REV)
        triggered = yield self.run_gate("main", ALL_GREEN, revision=OLD, rerun_of=4)
        self.assertEqual(triggered, [])
        self.assertEqual(
            self.get_nth_step(0).gate_summary, f"not deploying: main has moved on to {REV[:7]} since {OLD[:7]}"
        )


class VerifyPipelineTest(DeployStepCase, unittest.TestCase):
    @defer.inlineCallbacks
    def add_pipeline(self, number, revision, check_results, complete=True):
        yield self.add_history(
            "pipeline",
            20,
            [
                {
                    "number": number,
                    "complete": complete,
                    "results": 0 if complete else None,
                    "props": {"revision": revision, "check_results": check_results},
                }
            ],
        )

    def step(self, **props):
        return self.setup_with(VerifyPipelinePassed(make_target(), REQUIRED, name="gate"), **props)

    @defer.inlineCallbacks
    def test_triggered_by_the_gate_passes(self):
        self.step(revision=REV, gate_pipeline="pipeline #3")
        self.expect_outcome(result=SUCCESS)
        self.expect_property("deploy_revision", REV)
        yield self.run_step()

    @defer.inlineCallbacks
    def test_forced_revision_whose_pipeline_passed(self):
        yield self.add_pipeline(4, REV, ALL_GREEN)
        self.step(revision=REV[:8])
        self.expect_outcome(result=SUCCESS)
        self.expect_property("deploy_revision", REV)
        yield self.run_step()
        self.assertIn("pipeline #4: all 2 required checks passed", self.get_nth_step(0).summary)

    @defer.inlineCallbacks
    def test_forced_revision_whose_pipeline_failed_is_refused(self):
        yield self.add_pipeline(4, REV, {"lint": "failure", "test-py3.11": "success"})
        self.step(revision=REV)
        self.expect_outcome(result=FAILURE)
        self.expect_result_summary(
            {"step": "not deployed: pipeline #4: lint: failure", "build": "not deployed: pipeline #4: lint: failure"}
        )
        yield self.run_step()

    @defer.inlineCallbacks
    def test_override_is_recorded(self):
        yield self.add_pipeline(4, REV, {"lint": "failure"})
        self.step(revision=REV, override_gate=True, owner="alice", reason="hotfix")
        self.expect_outcome(result=WARNINGS)
        self.expect_property(
            "gate_override", "gate overridden by alice (hotfix): pipeline #4: lint: failure, test-py3.11 did not run"
        )
        yield self.run_step()

    @defer.inlineCallbacks
    def test_a_running_pipeline_is_not_a_refusal(self):
        yield self.add_pipeline(5, REV, {}, complete=False)
        self.step(revision=REV)
        self.expect_outcome(result=SKIPPED)
        yield self.run_step()
        self.assertIn("still running", self.get_nth_step(0).summary)

    @defer.inlineCallbacks
    def test_empty_revision_means_the_newest_change_on_the_branch(self):
        yield self.master.db.insert_test_data(
            [
                fakedb.SourceStamp(id=71, branch="main", revision=OLD),
                fakedb.SourceStamp(id=72, branch="main", revision=REV),
                fakedb.SourceStamp(id=73, branch="develop", revision="d" * 40),
                fakedb.Change(changeid=1, branch="main", revision=OLD, sourcestampid=71),
                fakedb.Change(changeid=2, branch="main", revision=REV, sourcestampid=72),
                fakedb.Change(changeid=3, branch="develop", revision="d" * 40, sourcestampid=73),
            ]
        )
        yield self.add_pipeline(9, REV, ALL_GREEN)
        self.step()
        self.expect_outcome(result=SUCCESS)
        self.expect_property("deploy_revision", REV)
        yield self.run_step()
