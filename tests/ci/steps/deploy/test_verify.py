"""Step tests: HealthCheck and SmokeTests (fake HTTP, fake clock)."""

from __future__ import annotations

from buildbot.process.results import FAILURE, SUCCESS
from twisted.internet import defer
from twisted.trial import unittest

from deploy_steps import REV, SITE, DeployStepCase, make_target
from namaskah_ci.steps.deploy.verify import HealthCheck, SmokeTests


class HealthCheckTest(DeployStepCase, unittest.TestCase):
    @defer.inlineCallbacks
    def test_retries_until_healthy(self):
        self.setup_step(HealthCheck(make_target(), name="health"))
        self.expect_http("GET", f"{SITE}/health", code=503)
        self.expect_http("GET", f"{SITE}/health", code=502)
        self.expect_http("GET", f"{SITE}/health", content_json={"status": "ok"})
        self.expect_outcome(result=SUCCESS)
        start = self.reactor.seconds()
        yield self.run_pumped()
        self.assertGreaterEqual(self.reactor.seconds() - start, 20)  # two intervals of 10s
        self.assertEqual(self.get_nth_step(0).summary, "healthy (try 3/5)")

    @defer.inlineCallbacks
    def test_fails_after_the_retries(self):
        self.setup_step(HealthCheck(make_target(health_retries=3), name="health"))
        for _ in range(3):
            self.expect_http("GET", f"{SITE}/health", code=500)
        self.expect_outcome(result=FAILURE)
        self.expect_property("deploy_failure", "health check failed")
        yield self.run_pumped()
        self.assertEqual(self.get_nth_step(0).summary, "unhealthy after 3 tries (last: HTTP 500)")

    @defer.inlineCallbacks
    def test_after_rollback_records_the_result_instead(self):
        self.setup_step(HealthCheck(make_target(health_retries=1), result_property="rollback_health", name="h"))
        self.expect_http("GET", f"{SITE}/health", code=503)
        self.expect_outcome(result=FAILURE)
        self.expect_property("rollback_health", "unhealthy")
        self.expect_no_property("deploy_failure")
        yield self.run_pumped()

    @defer.inlineCallbacks
    def test_connection_refused_counts_as_unhealthy(self):
        self.setup_step(HealthCheck(make_target(health_retries=2), name="health"))

        def refuse(session, method, ep, **kwargs):
            raise ConnectionRefusedError(ep)

        self.patch(self.http, "_do_request", refuse)
        self.expect_outcome(result=FAILURE)
        yield self.run_pumped()
        self.assertIn("unhealthy after 2 tries (last: connection failed)", self.get_nth_step(0).summary)


class SmokeTestsTest(DeployStepCase, unittest.TestCase):
    def expect_pages(self, diagnostics=None, health_code=200):
        self.expect_http("GET", f"{SITE}/health", code=health_code, content_json={"status": "ok"})
        self.expect_http("GET", f"{SITE}/api/v1/health", content_json={"database": "ok"})
        self.expect_http("GET", f"{SITE}/api/diagnostics", content_json=diagnostics or {"commit": REV})

    @defer.inlineCallbacks
    def test_all_pages_answer_and_the_commit_matches(self):
        self.setup_with(SmokeTests(make_target(), name="smoke"), deploy_revision=REV)
        self.expect_pages()
        self.expect_outcome(result=SUCCESS)
        yield self.run_step()
        self.assertEqual(self.get_nth_step(0).summary, f"3 endpoint(s) ok, serving {REV[:7]}")

    @defer.inlineCallbacks
    def test_a_different_commit_fails(self):
        self.setup_with(SmokeTests(make_target(), name="smoke"), deploy_revision=REV)
        self.expect_pages(diagnostics={"commit": "feedfacefeedface"})
        self.expect_outcome(result=FAILURE)
        self.expect_property(
            "deploy_failure", f"smoke test failed: /api/diagnostics: serves commit feedfac, expected {REV[:7]}"
        )
        yield self.run_step()

    @defer.inlineCallbacks
    def test_no_commit_reported_is_not_a_failure(self):
        self.setup_with(SmokeTests(make_target(), name="smoke"), deploy_revision=REV)
        self.expect_pages(diagnostics={"commit": None, "version": "1"})
        self.expect_outcome(result=SUCCESS)
        yield self.run_step()
        self.assertEqual(self.get_nth_step(0).summary, "3 endpoint(s) ok")

    @defer.inlineCallbacks
    def test_not_json_and_errors_are_listed(self):
        self.setup_with(SmokeTests(make_target(), name="smoke"), deploy_revision=REV)
        self.expect_http("GET", f"{SITE}/health", content="<html>ok</html>")
        self.expect_http("GET", f"{SITE}/api/v1/health", code=500, content_json={"detail": "db down"})
        self.expect_http("GET", f"{SITE}/api/diagnostics", content_json={"commit": REV})
        self.expect_outcome(result=FAILURE)
        self.expect_property("deploy_failure", "smoke test failed: /health: not JSON")
        yield self.run_step()
        self.assertEqual(self.get_nth_step(0).summary, "2/3 failed: /health: not JSON; /api/v1/health: HTTP 500")
        self.assert_no_leaks()
