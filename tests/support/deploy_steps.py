"""Shared set-up for the deploy step tests: a target, secrets, Buildbot's fake HTTP service, a clock.

`DeployStepCase` runs one step with `TestBuildStepMixin` on a fake master whose
secrets are `SECRETS` and whose HTTP service answers only what a test expects
(any other request fails the test). `run_pumped()` advances the fake clock so
retries, polls and waits finish instantly. `assert_no_leaks()` checks that no
secret value reached a log, the summary or a property.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from buildbot.test import fakedb
from buildbot.test.fake import httpclientservice as fakehttp
from buildbot.test.reactor import TestReactorMixin
from buildbot.test.steps import TestBuildStepMixin
from twisted.internet import defer
from twisted.trial import unittest

from namaskah_ci.steps.deploy.base import DeployTarget

HOOK = "https://api.render.example/deploy/srv-SECRETSVC?key=HOOKSECRET"
ROLLBACK_HOOK = "https://api.render.example/rollback/srv-SECRETSVC?key=RBSECRET"
API_KEY = "rnd_APIKEYSECRET"
SERVICE_ID = "srv-SECRETSVC"
WEBHOOK = "https://hooks.slack.example/services/T0/B0/WEBHOOKSECRET"
GITHUB_TOKEN = "ghp_TOKENSECRET"
API = "https://api.render.example/v1"
SITE = "https://app.example"
REV = "1234567890abcdef1234567890abcdef12345678"
OLD = "abcdefabcdefabcdefabcdefabcdefabcdefabcd"

SECRETS = {
    "render_deploy_hook": HOOK,
    "render_rollback_hook": ROLLBACK_HOOK,
    "render_api_key": API_KEY,
    "render_service_id": SERVICE_ID,
    "notify_webhook_url": WEBHOOK,
    "github_token": GITHUB_TOKEN,
}
SECRET_VALUES = ("HOOKSECRET", "RBSECRET", "APIKEYSECRET", "SECRETSVC", "WEBHOOKSECRET", "TOKENSECRET")
AUTH = {"Authorization": f"Bearer {API_KEY}", "Accept": "application/json"}


class _Anything:  # noqa: PLW1641 (unhashable, as a class with __eq__ alone is: equal to everything)
    """Equal to everything: an HTTP expectation that does not check a field."""

    def __eq__(self, other):
        return True

    def __ne__(self, other):
        return False

    def __repr__(self):
        return "ANY"


ANY = _Anything()


def make_target(**overrides) -> DeployTarget:
    values: dict[str, Any] = {
        "environment": "production",
        "branch": "main",
        "url": SITE,
        "deploy_hook_secret": "render_deploy_hook",
        "rollback_hook_secret": "render_rollback_hook",
        "service_id_secret": "render_service_id",
        "api_url": API,
        "wait_seconds": 60,
        "health_retries": 5,
        "health_interval_seconds": 10,
        "smoke_paths": ("/health", "/api/v1/health", "/api/diagnostics"),
        "live_timeout_seconds": 900,
        "poll_interval_seconds": 5,
        "request_timeout_seconds": 30,
        "deploy_builder": "deploy-production",
        "rollback_builder": "rollback-production",
    }
    values.update(overrides)
    return DeployTarget(**values)


def deploy_url(path: str) -> str:
    return f"{API}/services/{SERVICE_ID}{path}"


class DeployStepCase(TestBuildStepMixin, TestReactorMixin, unittest.TestCase):
    """The base of a deploy step's test case; `secrets` may be overridden per class."""

    secrets: ClassVar[dict[str, str]] = SECRETS

    @defer.inlineCallbacks
    def setUp(self):  # type: ignore[override]  # trial waits for the Deferred a setUp returns
        self.setup_test_reactor()
        yield self.setup_test_build_step(want_db=True, want_data=True, with_secrets=dict(self.secrets))
        self.http = yield fakehttp.HTTPClientService.getService(self.master, self, "")
        self.http.quiet = True
        # the steps turn any request error into a logged failure: keep the fake's mismatches loud
        self.http_mismatches: list[str] = []
        expecting = self.http._do_request

        def mismatched(failure):
            self.http_mismatches.append(failure.getErrorMessage())
            return failure

        def checked(session, method, ep, **kwargs):
            d = expecting(session, method, ep, **kwargs)
            d.addErrback(mismatched)
            return d

        self.http._do_request = checked
        self.addCleanup(lambda: self.assertEqual(self.http_mismatches, [], "unexpected HTTP requests"))

    def setup_with(self, step, **properties):
        """setup_step(step), then set build properties (the build exists only after setup_step)."""
        step = self.setup_step(step)
        for name, value in properties.items():
            self.build.setProperty(name, value, "test")
        return step

    def expect_http(self, method, url, code=200, content_json=None, content=None, headers=None, json_body=None):
        if content is None and content_json is None:
            content = ""
        self.http.expect(
            method.lower(), url, code=code, content=content, content_json=content_json, headers=headers, json=json_body
        )

    @defer.inlineCallbacks
    def run_pumped(self, max_seconds: int = 7200):
        """run_step(), advancing the fake clock a second at a time until the step ends."""
        d = self.run_step()
        for _ in range(max_seconds):
            if d.called:
                break
            self.reactor.advance(1)
        yield d

    def log_text(self, name: str = "details", index: int = 0) -> str:
        step = self.get_nth_step(index)
        return step.logs[name].stdout if name in step.logs else ""

    def all_text(self) -> str:
        """Every log, summary and property of the steps run, as one string."""
        parts = []
        for step in self._steps:
            for log in step.logs.values():
                parts += [log.stdout, log.stderr, getattr(log, "header", "")]
            parts.append(json.dumps(step.getResultSummary(), default=str))
        parts.append(json.dumps(self.build.getProperties().asDict(), default=str))
        return "\n".join(p for p in parts if p)

    def assert_no_leaks(self):
        text = self.all_text()
        for value in SECRET_VALUES:
            self.assertNotIn(value, text)

    @defer.inlineCallbacks
    def add_history(self, builder_name: str, builderid: int, builds: list[dict]):
        """Completed builds of a builder, each {number, results, props, complete_at}."""
        rows = [fakedb.Builder(id=builderid, name=builder_name)]
        for b in builds:
            buildid = builderid * 100 + b["number"]
            rows += [
                fakedb.Buildset(id=buildid),
                fakedb.BuildRequest(id=buildid, buildsetid=buildid, builderid=builderid),
                fakedb.Build(
                    id=buildid,
                    number=b["number"],
                    buildrequestid=buildid,
                    builderid=builderid,
                    masterid=fakedb.FakeDBConnector.MASTER_ID,
                    workerid=400,
                    results=b.get("results", 0),
                    complete_at=b.get("complete_at", 1_700_000_000 + buildid) if b.get("complete", True) else None,
                ),
            ]
            for name, value in b.get("props", {}).items():
                rows.append(fakedb.BuildProperty(buildid=buildid, name=name, value=value, source="test"))
        yield self.master.db.insert_test_data(rows)
