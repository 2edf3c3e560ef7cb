"""Step tests: CheckDeployConfigured, WaitUntilLive (fake HTTP, fake clock); starting a deploy: test_deploy_start."""

from __future__ import annotations

from typing import ClassVar

from buildbot.process.results import CANCELLED, FAILURE, SKIPPED, SUCCESS
from twisted.internet import defer
from twisted.trial import unittest

from deploy_steps import AUTH, HOOK, REV, SECRETS, DeployStepCase, deploy_url, make_target
from namaskah_ci.steps.deploy.base import describe_http_error, with_ref
from namaskah_ci.steps.deploy.render import CheckDeployConfigured, WaitUntilLive, classify, deploy_from
from namaskah_ci.text import same_revision

HOOK_REF = f"{HOOK}&ref={REV}"


class HelpersTest(unittest.TestCase):
    def test_with_ref_appends_to_the_query(self):
        self.assertEqual(with_ref("https://h/deploy/srv?key=k", "abc"), "https://h/deploy/srv?key=k&ref=abc")
        self.assertEqual(with_ref("https://h/hook", "abc"), "https://h/hook?ref=abc")
        self.assertEqual(with_ref("https://h/d?key=k", "x&key=evil"), "https://h/d?key=k&ref=x%26key%3Devil")

    def test_same_revision_accepts_abbreviations(self):
        self.assertTrue(same_revision(REV, REV[:7]))
        self.assertTrue(same_revision(REV[:10].upper(), REV))
        self.assertFalse(same_revision(REV, "1234560"))
        self.assertFalse(same_revision(REV, None))
        self.assertFalse(same_revision("abc", "abcd"))

    def test_classify_statuses(self):
        self.assertEqual(classify("live"), "live")
        for status in ("build_failed", "update_failed", "canceled", "pre_deploy_failed"):
            self.assertEqual(classify(status), "failed")
        for status in ("created", "queued", "build_in_progress", "update_in_progress", "pre_deploy_in_progress"):
            self.assertEqual(classify(status), "running")
        self.assertEqual(classify("deactivated"), "unexpected")

    def test_deploy_from_both_shapes(self):
        wrapped, bare = deploy_from({"deploy": {"id": "dep-1"}}), deploy_from({"id": "dep-2", "status": "live"})
        assert wrapped is not None and bare is not None
        self.assertEqual(wrapped["id"], "dep-1")
        self.assertEqual(bare["id"], "dep-2")
        self.assertIsNone(deploy_from({"deploy": {}}))
        self.assertIsNone(deploy_from("garbage"))

    def test_http_errors_are_described_without_their_text(self):
        class ConnectionError_(Exception):
            pass

        ConnectionError_.__name__ = "ConnectionError"
        self.assertEqual(describe_http_error(ConnectionError_("https://x/?key=SECRET")), "connection failed")
        ReadTimeout = type("ReadTimeout", (Exception,), {})
        self.assertEqual(describe_http_error(ReadTimeout("u")), "timed out")
        self.assertEqual(describe_http_error(ValueError("SECRET")), "request failed (ValueError)")


class CheckConfiguredTest(DeployStepCase, unittest.TestCase):
    @defer.inlineCallbacks
    def test_configured(self):
        yield self.setup_step(CheckDeployConfigured(make_target(), name="configuration"))
        self.expect_outcome(result=SUCCESS)
        self.expect_property("deploy_environment", "production")
        self.expect_no_property("deploy_not_configured")
        yield self.run_step()
        self.assertIn("deploy hook (render_deploy_hook): set", self.log_text())
        self.assert_no_leaks()


class NotConfiguredTest(DeployStepCase, unittest.TestCase):
    secrets: ClassVar[dict[str, str]] = {"render_api_key": "rnd_APIKEYSECRET"}

    @defer.inlineCallbacks
    def test_missing_hook_skips_and_says_why(self):
        yield self.setup_step(CheckDeployConfigured(make_target(), name="configuration"))
        self.expect_outcome(result=SKIPPED)
        self.expect_property("deploy_not_configured", "not configured: no render_deploy_hook secret")
        self.expect_result_summary(
            {
                "step": "not configured: no render_deploy_hook secret",
                "build": "not configured: no render_deploy_hook secret",
            }
        )
        yield self.run_step()

    @defer.inlineCallbacks
    def test_rollback_needs_some_way(self):
        yield self.setup_step(CheckDeployConfigured(make_target(), rollback=True, name="configuration"))
        self.expect_outcome(result=SKIPPED)
        yield self.run_step()
        self.assertIn("not configured", self.get_nth_step(0).getProperty("deploy_not_configured"))


class WaitUntilLiveTest(DeployStepCase, unittest.TestCase):
    def setup_wait(self, deploy_id="dep-1", **target):
        props = {"deploy_revision": REV, "deploy_hook_at": 1_700_000_000.0}
        if deploy_id:
            props["render_deploy_id"] = deploy_id
        return self.setup_with(WaitUntilLive(make_target(**target), name="wait"), **props)

    def expect_status(self, status, deploy_id="dep-1", code=200):
        self.expect_http(
            "GET",
            deploy_url(f"/deploys/{deploy_id}"),
            headers=AUTH,
            code=code,
            content_json={"id": deploy_id, "status": status, "commit": {"id": REV}},
        )

    @defer.inlineCallbacks
    def test_polls_until_live(self):
        yield self.setup_wait()
        for status in ("created", "build_in_progress", "update_in_progress", "live"):
            self.expect_status(status)
        self.expect_outcome(result=SUCCESS)
        yield self.run_pumped()
        self.assertIn("dep-1 live after 15s", self.get_nth_step(0).summary)
        self.assert_no_leaks()

    @defer.inlineCallbacks
    def test_build_failed_fails(self):
        yield self.setup_wait()
        self.expect_status("build_in_progress")
        self.expect_status("build_failed")
        self.expect_outcome(result=FAILURE)
        self.expect_property("deploy_failure", "Render deploy build_failed")
        yield self.run_pumped()

    @defer.inlineCallbacks
    def test_timeout_cancels_the_pending_deploy(self):
        yield self.setup_wait(live_timeout_seconds=10, poll_interval_seconds=5)
        for _ in range(3):
            self.expect_status("update_in_progress")
        self.expect_http("POST", deploy_url("/deploys/dep-1/cancel"), headers=AUTH, content_json={"id": "dep-1"})
        self.expect_outcome(result=FAILURE)
        self.expect_property("deploy_failure", "not live after 10s (last status: update_in_progress)")
        yield self.run_pumped()

    @defer.inlineCallbacks
    def test_garbage_five_times_fails(self):
        yield self.setup_wait()
        self.expect_http("GET", deploy_url("/deploys/dep-1"), headers=AUTH, content="<html>oops")
        self.expect_status("build_in_progress")
        for _ in range(5):
            self.expect_http("GET", deploy_url("/deploys/dep-1"), headers=AUTH, code=502)
        self.expect_outcome(result=FAILURE)
        self.expect_property("deploy_failure", "Render API unusable: Render API answered HTTP 502")
        yield self.run_pumped()

    @defer.inlineCallbacks
    def test_unauthorized_fails_at_once(self):
        yield self.setup_wait()
        self.expect_status("x", code=401)
        self.expect_outcome(result=FAILURE)
        self.expect_property("deploy_failure", "Render API answered HTTP 401")
        yield self.run_pumped()

    @defer.inlineCallbacks
    def test_queued_deploy_is_found_by_listing(self):
        yield self.setup_wait(deploy_id=None)
        self.expect_http("GET", deploy_url("/deploys?limit=20"), headers=AUTH, content_json=[])
        self.expect_http(
            "GET",
            deploy_url("/deploys?limit=20"),
            headers=AUTH,
            content_json=[
                {
                    "deploy": {
                        "id": "dep-new",
                        "status": "created",
                        "commit": {"id": REV},
                        "createdAt": "2023-11-14T22:13:30Z",
                    },
                    "cursor": "c1",
                },
                {
                    "deploy": {
                        "id": "dep-old",
                        "status": "live",
                        "commit": {"id": "ffffffffff"},
                        "createdAt": "2023-11-14T20:00:00Z",
                    },
                    "cursor": "c2",
                },
            ],
        )
        self.expect_status("live", deploy_id="dep-new")
        self.expect_outcome(result=SUCCESS)
        self.expect_property("render_deploy_id", "dep-new")
        yield self.run_pumped()


class WaitWithoutApiTest(DeployStepCase, unittest.TestCase):
    secrets: ClassVar[dict[str, str]] = {"render_deploy_hook": SECRETS["render_deploy_hook"]}

    @defer.inlineCallbacks
    def test_waits_the_fixed_time(self):
        yield self.setup_step(WaitUntilLive(make_target(wait_seconds=60), name="wait"))
        self.expect_outcome(result=SUCCESS)
        start = self.reactor.seconds()
        yield self.run_pumped()
        self.assertGreaterEqual(self.reactor.seconds() - start, 60)
        self.assertEqual(self.get_nth_step(0).summary, "waited 60s (no Render API key: status not checked)")


class InterruptTest(DeployStepCase, unittest.TestCase):
    @defer.inlineCallbacks
    def test_stop_during_polling_cancels(self):
        step = self.setup_with(WaitUntilLive(make_target(), name="wait"), render_deploy_id="dep-1")
        self.expect_http(
            "GET", deploy_url("/deploys/dep-1"), headers=AUTH, content_json={"id": "dep-1", "status": "created"}
        )
        self.expect_outcome(result=CANCELLED)
        d = self.run_step()
        self.reactor.advance(1)
        yield step.interrupt("stop")
        for _ in range(10):
            self.reactor.advance(1)
        yield d
