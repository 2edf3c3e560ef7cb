"""The deploy gate when the operator set no `[checks] required`: the verdict jobs of the pipeline file
at the revision (matrix entries expanded, `verdict: false` jobs left out) are required, and the gate
step names them. A deploy build the gate triggered carries the pipeline's pinned revision; a forced
deploy whose revision still has a pipeline running ends SKIPPED, never FAILURE."""

from __future__ import annotations

from pathlib import Path

from buildbot.process.buildrequest import TempSourceStamp
from buildbot.process.results import SKIPPED, SUCCESS
from buildbot.steps.trigger import Trigger
from twisted.internet import defer
from twisted.trial import unittest

from deploy_steps import REV, DeployStepCase, make_target
from namaskah_ci.pipeline.model import load_pipeline
from namaskah_ci.settings import load_settings
from namaskah_ci.steps.deploy.gate import DeployGate, VerifyPipelinePassed, required_checks_verdict
from pipeline_support import SEED_CHECKS

ROOT = Path(__file__).resolve().parents[4]
BRANCHES = {"main": "deploy-production-after-pipeline"}
FILE = """
version: 1
jobs:
  a:
    matrix: {python: ["3.9", "3.11"]}
    steps: [pytest]
  b:
    steps: [ruff check .]
  c:
    verdict: false
    steps: [codeql]
"""
ANOTHER_REPO = """
version: 1
jobs:
  unit:
    steps: [pytest]
  migration-test:
    verdict: false
    steps: [alembic upgrade head]
"""


def verdict_jobs(text: str) -> list[str]:
    """What LoadPipeline records as `pipeline_jobs`: the file's verdict jobs on main."""
    return [job.builder for job in load_pipeline(text, ".namaskah-ci.yml").verdict_jobs("main")]


class DefaultVerdictTest(unittest.TestCase):
    def test_the_files_verdict_jobs_are_required_and_a_verdict_false_job_is_not(self):
        defined = verdict_jobs(FILE)
        self.assertEqual(sorted(defined), ["a-py3.11", "a-py3.9", "b"])
        green = {"a-py3.9": "success", "a-py3.11": "success", "b": "success", "c": "failure"}
        verdict = required_checks_verdict(green, [], defined, ".namaskah-ci.yml at 1234567")
        self.assertTrue(verdict.passed, verdict.reason)
        self.assertEqual(sorted(verdict.required), ["a-py3.11", "a-py3.9", "b"])
        self.assertTrue(verdict.which().startswith("required (the pipeline file's verdict jobs): "))
        failed = required_checks_verdict({**green, "a-py3.9": "failure"}, [], defined)
        self.assertFalse(failed.passed)
        self.assertEqual(failed.reason, "a-py3.9: failure")

    def test_a_job_named_migration_test_on_another_repository_is_not_required_unless_a_verdict_job(self):
        defined = verdict_jobs(ANOTHER_REPO)
        verdict = required_checks_verdict({"unit": "success"}, [], defined, ".namaskah-ci.yml at 1234567")
        self.assertTrue(verdict.passed, verdict.reason)
        self.assertEqual(verdict.required, ("unit",))
        self.assertNotIn("not defined", verdict.reason)
        as_verdict = verdict_jobs(ANOTHER_REPO.replace("    verdict: false\n", ""))
        self.assertFalse(required_checks_verdict({"unit": "success"}, [], as_verdict).passed)

    def test_this_repositorys_seed_pipeline_keeps_the_eight_by_default(self):
        seed = (ROOT / ".namaskah-ci.yml").read_text()
        self.assertEqual(load_settings({}).checks.required, [])
        self.assertEqual(verdict_jobs(seed), SEED_CHECKS)
        self.assertEqual(verdict_jobs((ROOT / "master" / "default-pipeline.yml").read_text()), SEED_CHECKS)

    def test_the_operators_list_still_wins(self):
        verdict = required_checks_verdict({"unit": "success"}, ["unit", "lint"], verdict_jobs(ANOTHER_REPO), "f")
        self.assertEqual(verdict.reason, "lint is not defined in f")
        self.assertEqual(verdict.which(), "")

    def test_no_file_read_or_no_verdict_job_never_deploys(self):
        self.assertFalse(required_checks_verdict({}, [], None).passed)
        self.assertEqual(
            required_checks_verdict({}, [], [], ".namaskah-ci.yml at 1234567").reason,
            ".namaskah-ci.yml at 1234567 has no verdict job on this branch",
        )


class DefaultGateStepTest(DeployStepCase, unittest.TestCase):
    @defer.inlineCallbacks
    def run_gate(self, check_results, expected, **extra):
        triggered = []

        def fake_run(step):
            triggered.append((step.getSchedulersAndProperties(), step.prepareSourcestampListForTrigger()))
            return defer.succeed(SUCCESS)

        self.patch(Trigger, "run", fake_run)
        props = {"branch": "main", "check_results": check_results, "buildnumber": 7, "revision": REV}
        props.update(pipeline_jobs=verdict_jobs(FILE), pipeline_file=".namaskah-ci.yml at 1234567", **extra)
        self.setup_with(DeployGate(BRANCHES, [], name="gate"), **props)
        # the pipeline's own stamp, as a first run requests it: no revision
        stamp = {"branch": "main", "revision": None, "repository": "repo", "project": "p", "codebase": ""}
        self.build.sources[""] = TempSourceStamp({**stamp, "ssid": 1, "patch": None, "changes": []})
        self.expect_outcome(result=expected)
        yield self.run_step()
        return triggered

    @defer.inlineCallbacks
    def test_green_verdict_jobs_deploy_and_the_step_names_them(self):
        green = {"a-py3.11": "success", "a-py3.9": "success", "b": "success"}
        triggered = yield self.run_gate(green, SUCCESS)
        self.assertEqual(len(triggered), 1)
        self.assertEqual(
            self.get_nth_step(0).gate_summary,
            "all 3 required checks passed: deploy of 1234567 requested (deploy-production-after-pipeline); "
            "required (the pipeline file's verdict jobs): a-py3.9, a-py3.11, b",
        )

    @defer.inlineCallbacks
    def test_the_deploy_build_is_pinned_to_the_pipelines_revision(self):
        """A first run's (or a forced pipeline's) stamp has no revision: the deploy build must not
        resolve 'the newest' itself (it found another pipeline of the revision still running)."""
        green = {"a-py3.11": "success", "a-py3.9": "success", "b": "success"}
        triggered = yield self.run_gate(green, SUCCESS)
        stamps = triggered[0][1]
        self.assertTrue(stamps)
        self.assertEqual({stamp["revision"] for stamp in stamps}, {REV})

    @defer.inlineCallbacks
    def test_a_failed_verdict_job_blocks_naming_the_required_list(self):
        triggered = yield self.run_gate({"a-py3.11": "success", "a-py3.9": "success", "b": "failure"}, SKIPPED)
        self.assertEqual(triggered, [])
        self.assertEqual(
            self.get_nth_step(0).gate_summary,
            "not deploying: b: failure; required (the pipeline file's verdict jobs): a-py3.9, a-py3.11, b",
        )


class RunningPipelineTest(DeployStepCase, unittest.TestCase):
    @defer.inlineCallbacks
    def add_pipeline(self, number, complete, props):
        yield self.add_history(
            "pipeline",
            20,
            [{"number": number, "complete": complete, "results": 0 if complete else None, "props": props}],
        )

    @defer.inlineCallbacks
    def test_a_revision_whose_pipeline_still_runs_is_skipped_not_failed(self):
        yield self.add_pipeline(2, False, {"revision": REV, "check_results": {}})
        self.setup_with(VerifyPipelinePassed(make_target(), [], name="gate"), revision=REV)
        self.expect_outcome(result=SKIPPED)
        self.expect_property("deploy_revision", REV)
        yield self.run_step()
        summary = self.get_nth_step(0).summary
        self.assertEqual(
            summary, "not deployed yet: pipeline #2 of 1234567 is still running: its gate deploys it if it passes"
        )
        self.assertEqual(self.build.getProperty("deploy_superseded"), summary)

    @defer.inlineCallbacks
    def test_a_forced_deploy_requires_the_files_verdict_jobs_by_default(self):
        yield self.add_pipeline(
            4,
            True,
            {
                "revision": REV,
                "check_results": {"a-py3.9": "success", "a-py3.11": "success", "b": "success", "c": "failure"},
                "pipeline_jobs": verdict_jobs(FILE),
            },
        )
        self.setup_with(VerifyPipelinePassed(make_target(), [], name="gate"), revision=REV)
        self.expect_outcome(result=SUCCESS)
        yield self.run_step()
        self.assertIn(
            "pipeline #4: all 3 required checks passed; required (the pipeline file's verdict jobs)",
            self.get_nth_step(0).summary,
        )
