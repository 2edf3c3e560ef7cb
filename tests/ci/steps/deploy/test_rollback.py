"""The deploy history (Buildbot DB) and the rollback steps: target choice, API/hook fallbacks."""

from __future__ import annotations

import types
from typing import ClassVar

from buildbot.process.results import CANCELLED, FAILURE, SUCCESS, WARNINGS
from twisted.internet import defer
from twisted.trial import unittest

from deploy_steps import (
    AUTH,
    HOOK,
    OLD,
    REV,
    ROLLBACK_HOOK,
    SECRETS,
    DeployStepCase,
    deploy_url,
    make_target,
)
from namaskah_ci.steps.deploy.history import good_deploys, previous_good
from namaskah_ci.steps.deploy.rollback import ChooseRollbackTarget, RollBack, rollback_needed

MID = "5555555555555555555555555555555555555555"


def good(number, revision, deploy_id, results=0, complete_at=None):
    props = {"deploy_revision": revision}
    if deploy_id:
        props["render_deploy_id"] = deploy_id
    return {
        "number": number,
        "results": results,
        "props": props,
        "complete_at": complete_at or 1_700_000_000 + number * 10,
    }


def test_rollback_is_needed_after_any_failure_once_the_hook_was_accepted():
    def step(results, started):
        return types.SimpleNamespace(
            build=types.SimpleNamespace(results=results),
            getProperty=lambda name: started if name == "deploy_started" else None,
        )

    assert rollback_needed(step(FAILURE, True))
    assert rollback_needed(step(CANCELLED, True))  # stopped by hand mid-deploy: still roll back
    assert not rollback_needed(step(SUCCESS, True))
    assert not rollback_needed(step(WARNINGS, True))  # an overridden gate is not a failure
    assert not rollback_needed(step(FAILURE, None))  # the hook never accepted: production unchanged


class HistoryCase(DeployStepCase):
    @defer.inlineCallbacks
    def add_standard_history(self):
        # deploy-production: #1 OLD ok, #2 MID ok, #3 REV failed; rollback-production: #1 back to OLD (newest)
        yield self.add_history(
            "deploy-production",
            11,
            [
                good(1, OLD, "dep-old"),
                good(2, MID, "dep-mid"),
                good(3, REV, "dep-bad", results=2),
            ],
        )
        yield self.add_history("rollback-production", 12, [good(1, OLD, "dep-rb", complete_at=1_700_000_100)])


class HistoryTest(HistoryCase, unittest.TestCase):
    @defer.inlineCallbacks
    def test_good_deploys_newest_first_across_builders(self):
        yield self.add_standard_history()
        records = yield good_deploys(self.master, ("deploy-production", "rollback-production"))
        self.assertEqual(
            [(r.label, r.revision, r.deploy_id) for r in records],
            [
                ("rollback-production #1", OLD, "dep-rb"),
                ("deploy-production #2", MID, "dep-mid"),
                ("deploy-production #1", OLD, "dep-old"),
            ],
        )
        found = previous_good(records)
        assert found is not None
        self.assertEqual(found.revision, MID)

    @defer.inlineCallbacks
    def test_unknown_builders_have_no_history(self):
        records = yield good_deploys(self.master, ("deploy-staging",))
        self.assertEqual(records, [])
        self.assertIsNone(previous_good(records))


class ChooseTargetTest(HistoryCase, unittest.TestCase):
    @defer.inlineCallbacks
    def test_default_is_the_good_deploy_before_the_current_one(self):
        yield self.add_standard_history()
        self.setup_step(ChooseRollbackTarget(make_target(), name="target"))
        self.expect_outcome(result=SUCCESS)
        self.expect_property("deploy_revision", MID)
        self.expect_property("rollback_target_deploy_id", "dep-mid")
        yield self.run_step()

    @defer.inlineCallbacks
    def test_requested_revision_found_in_history(self):
        yield self.add_standard_history()
        self.setup_with(ChooseRollbackTarget(make_target(), name="target"), rollback_target=OLD[:8])
        self.expect_outcome(result=SUCCESS)
        self.expect_property("deploy_revision", OLD)
        self.expect_property("rollback_target_deploy_id", "dep-rb")
        yield self.run_step()

    @defer.inlineCallbacks
    def test_nothing_earlier_fails(self):
        yield self.add_history("deploy-production", 11, [good(1, OLD, "dep-old")])
        self.setup_step(ChooseRollbackTarget(make_target(), name="target"))
        self.expect_outcome(result=FAILURE)
        self.expect_property(
            "deploy_failure", "no earlier good deploy of production to roll back to (current: abcdefa)"
        )
        yield self.run_step()


class AutoRollbackTest(HistoryCase, unittest.TestCase):
    @defer.inlineCallbacks
    def test_by_render_api_to_the_newest_good_deploy(self):
        yield self.add_standard_history()
        self.setup_step(RollBack(make_target(), auto=True, name="rollback"))
        self.expect_http(
            "POST",
            deploy_url("/rollback"),
            headers=AUTH,
            json_body={"deployId": "dep-rb"},
            code=201,
            content_json={"id": "dep-new", "status": "created"},
        )
        self.expect_outcome(result=SUCCESS)
        self.expect_property("rolled_back_to", OLD)
        self.expect_property("rollback_deploy_id", "dep-new")
        self.expect_property("rollback_started", True)
        self.expect_no_property("render_deploy_id")
        yield self.run_step()
        self.assert_no_leaks()

    @defer.inlineCallbacks
    def test_api_failure_falls_back_to_the_rollback_hook(self):
        yield self.add_standard_history()
        self.setup_step(RollBack(make_target(), auto=True, name="rollback"))
        for _ in range(6):  # the one retry policy of every POST to Render (render.HookStep)
            self.expect_http("POST", deploy_url("/rollback"), headers=AUTH, json_body={"deployId": "dep-rb"}, code=500)
        self.expect_http("POST", f"{ROLLBACK_HOOK}&ref={OLD}", content_json={"deploy": {"id": "dep-hook"}})
        self.expect_outcome(result=SUCCESS)
        self.expect_property("rollback_deploy_id", "dep-hook")
        yield self.run_pumped()
        self.assertIn("by rollback hook", self.get_nth_step(0).summary)
        self.assert_no_leaks()

    @defer.inlineCallbacks
    def test_nothing_to_roll_back_to(self):
        self.setup_step(RollBack(make_target(), auto=True, name="rollback"))
        self.expect_outcome(result=FAILURE)
        self.expect_property("rollback_result", "nothing to roll back to")
        self.expect_no_property("rollback_started")
        yield self.run_step()


class HookOnlyRollbackTest(HistoryCase, unittest.TestCase):
    secrets: ClassVar[dict[str, str]] = {"render_deploy_hook": SECRETS["render_deploy_hook"]}

    @defer.inlineCallbacks
    def test_deploy_hook_with_the_last_good_ref(self):
        yield self.add_standard_history()
        self.setup_step(RollBack(make_target(), auto=True, name="rollback"))
        self.expect_http("POST", f"{HOOK}&ref={OLD}", code=202)
        self.expect_outcome(result=SUCCESS)
        self.expect_property("rolled_back_to", OLD)
        self.expect_no_property("rollback_deploy_id")
        yield self.run_step()


class NoWayTest(HistoryCase, unittest.TestCase):
    secrets: ClassVar[dict[str, str]] = {"notify_webhook_url": SECRETS["notify_webhook_url"]}

    @defer.inlineCallbacks
    def test_says_nothing_is_configured(self):
        yield self.add_standard_history()
        self.setup_step(RollBack(make_target(), auto=True, name="rollback"))
        self.expect_outcome(result=FAILURE)
        self.expect_property("rollback_result", "no rollback configured")
        yield self.run_step()


class ManualRollbackTest(HistoryCase, unittest.TestCase):
    @defer.inlineCallbacks
    def test_sets_the_new_live_deploy_for_the_history(self):
        self.setup_with(
            RollBack(make_target(), auto=False, name="rollback"),
            deploy_revision=MID,
            rollback_target_deploy_id="dep-mid",
        )
        self.expect_http(
            "POST",
            deploy_url("/rollback"),
            headers=AUTH,
            json_body={"deployId": "dep-mid"},
            code=201,
            content_json={"id": "dep-rb2", "status": "created"},
        )
        self.expect_outcome(result=SUCCESS)
        self.expect_property("render_deploy_id", "dep-rb2")
        self.expect_property("deploy_started", True)
        yield self.run_step()

    @defer.inlineCallbacks
    def test_target_without_deploy_id_uses_the_rollback_hook(self):
        self.setup_with(RollBack(make_target(), auto=False, name="rollback"), deploy_revision=MID)
        self.expect_http("POST", f"{ROLLBACK_HOOK}&ref={MID}", code=400)
        self.expect_http("POST", f"{HOOK}&ref={MID}", code=400)
        self.expect_outcome(result=FAILURE)
        self.expect_property(
            "deploy_failure", "rollback failed: rollback hook answered HTTP 400; deploy hook answered HTTP 400"
        )
        yield self.run_step()
