"""Notify: the outcome line, the webhook payload, e-mail and the GitHub commit status."""

from __future__ import annotations

from email import message_from_bytes
from typing import Any, ClassVar, cast

from buildbot.process.properties import Properties
from buildbot.process.results import FAILURE, SUCCESS
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.trial import unittest

from deploy_steps import ANY, GITHUB_TOKEN, OLD, REV, SECRETS, WEBHOOK, DeployStepCase, make_target
from namaskah_ci.steps.deploy.notify import Notify, github_slug, outcome_text


def props(**values) -> Properties:
    p = Properties()
    for name, value in values.items():
        p.setProperty(name, value, "test")
    return p


class OutcomeTextTest(unittest.TestCase):
    def test_success(self):
        text = outcome_text(props(deploy_environment="production", deploy_revision=REV), False, True)
        self.assertEqual(text, "deployed 1234567 to production: live, healthy, smoke tests passed")

    def test_rolled_back_after_a_failed_health_check(self):
        p = props(
            deploy_environment="production",
            deploy_revision=REV,
            deploy_started=True,
            deploy_failure="health check failed",
            rollback_started=True,
            rolled_back_to=OLD,
            rollback_health="healthy",
        )
        self.assertEqual(
            outcome_text(p, False, False), "deployed 1234567, health check failed, rolled back to abcdefa (healthy)"
        )

    def test_rollback_that_did_not_go_live(self):
        p = props(
            deploy_revision=REV,
            deploy_started=True,
            deploy_failure="smoke test failed: /health: HTTP 500",
            rollback_started=True,
            rolled_back_to=OLD,
            rollback_live_failure="Render deploy build_failed",
            rollback_health="unhealthy",
        )
        self.assertEqual(
            outcome_text(p, False, False),
            "deployed 1234567, smoke test failed: /health: HTTP 500, "
            "rolled back to abcdefa (Render deploy build_failed; unhealthy)",
        )

    def test_nothing_to_roll_back_to(self):
        p = props(
            deploy_revision=REV,
            deploy_started=True,
            deploy_failure="Render deploy build_failed",
            rollback_result="nothing to roll back to",
        )
        self.assertEqual(
            outcome_text(p, False, False), "deployed 1234567, Render deploy build_failed, nothing to roll back to"
        )

    def test_hook_refused(self):
        p = props(deploy_environment="staging", deploy_revision=REV, deploy_failure="deploy hook answered HTTP 404")
        self.assertEqual(
            outcome_text(p, False, False), "deploy of 1234567 to staging failed: deploy hook answered HTTP 404"
        )

    def test_rollback_builds(self):
        p = props(deploy_environment="production", deploy_revision=OLD, deploy_failure="health check failed")
        self.assertEqual(outcome_text(p, True, True), "rolled back production to abcdefa (healthy)")
        self.assertEqual(outcome_text(p, True, False), "rollback of production to abcdefa failed: health check failed")

    def test_github_slug(self):
        self.assertEqual(github_slug("https://github.com/acme/namaskah.git"), "acme/namaskah")
        self.assertEqual(github_slug("git@github.com:acme/namaskah.git"), "acme/namaskah")
        self.assertEqual(github_slug("/srv/git/namaskah"), None)
        self.assertEqual(github_slug("/srv/git/namaskah", "acme/mirror"), "acme/mirror")


class NotifyTest(DeployStepCase, unittest.TestCase):
    def notify(self, results=SUCCESS, **kwargs):
        step = Notify(
            make_target(),
            name="notify",
            github_repository="acme/namaskah",
            github_api_url="https://gh.example/api",
            **kwargs,
        )
        self.sent: list[tuple] = []

        def mailer(reactor, host, port, sender, recipients, message):
            self.sent.append((host, port, sender, recipients, message_from_bytes(message)))
            return defer.succeed(None)

        step = self.setup_with(
            step, deploy_attempted=True, deploy_environment="production", deploy_revision=REV, render_deploy_id="dep-1"
        )
        step.mailer = mailer
        self.build.results = results  # the fake build has no result of its own
        return step

    def expect_status(self, state, code=201):
        self.expect_http(
            "POST",
            f"https://gh.example/api/repos/acme/namaskah/statuses/{REV}",
            code=code,
            headers={"Authorization": f"Bearer {GITHUB_TOKEN}", "Accept": "application/vnd.github+json"},
            json_body={
                "state": state,
                "context": "deploy/production",
                "description": "deployed 1234567 to production: live, healthy, smoke tests passed",
                "target_url": "http://localhost:8080/#/builders/None/builds/13",
            },
        )

    @defer.inlineCallbacks
    def test_success_goes_everywhere(self):
        self.notify(email_to=("ops@example.com",), smtp_host="mail.example", smtp_port=2525)
        payload = {
            "text": "[production] deployed 1234567 to production: live, healthy, smoke tests passed "
            "http://localhost:8080/#/builders/None/builds/13",
            "environment": "production",
            "kind": "deploy",
            "revision": REV,
            "result": "success",
            "deploy_id": "dep-1",
            "rolled_back_to": None,
            "rollback_deploy_id": None,
            "failure": None,
            "gate_override": None,
            "summary": "deployed 1234567 to production: live, healthy, smoke tests passed",
            "build_url": "http://localhost:8080/#/builders/None/builds/13",
        }
        self.expect_http("POST", WEBHOOK, json_body=payload, content_json={"ok": True})
        self.expect_status("success")
        self.expect_outcome(result=SUCCESS)
        yield self.run_step()
        step = self.get_nth_step(0)
        self.assertEqual(step.summary, "webhook: sent; e-mail: sent to 1; GitHub status: set")
        self.assertEqual(step.getResultSummary()["build"], payload["summary"])
        host, port, _sender, recipients, mail = self.sent[0]
        self.assertEqual((host, port, recipients), ("mail.example", 2525, ["ops@example.com"]))
        self.assertIn("production deploy success", mail["Subject"])
        self.assertIn("deploy_id: dep-1", mail.get_payload())
        self.assert_no_leaks()

    @defer.inlineCallbacks
    def test_a_failed_channel_is_a_warning(self):
        self.notify()
        self.expect_http("POST", WEBHOOK, code=500, json_body=ANY)
        self.expect_http("POST", WEBHOOK, code=500, json_body=ANY)
        self.expect_status("success", code=401)
        self.expect_outcome(result=FAILURE)
        yield self.run_pumped()
        step = self.get_nth_step(0)
        self.assertTrue(step.warnOnFailure)
        self.assertFalse(step.flunkOnFailure)
        self.assertEqual(
            step.summary, "FAILED webhook: HTTP 500; e-mail: not configured; FAILED GitHub status: HTTP 401"
        )
        self.assert_no_leaks()


class NotifyFailureTest(DeployStepCase, unittest.TestCase):
    secrets: ClassVar[dict[str, str]] = {"notify_webhook_url": WEBHOOK}

    @defer.inlineCallbacks
    def test_failure_payload_names_the_rollback(self):
        self.setup_with(
            Notify(make_target(), name="notify"),
            deploy_attempted=True,
            deploy_environment="production",
            deploy_revision=REV,
            render_deploy_id="dep-bad",
            deploy_started=True,
            deploy_failure="health check failed",
            rollback_started=True,
            rolled_back_to=OLD,
            rollback_deploy_id="dep-rb",
            rollback_health="healthy",
        )
        self.build.results = FAILURE
        text = "deployed 1234567, health check failed, rolled back to abcdefa (healthy)"
        url = "http://localhost:8080/#/builders/None/builds/13"
        self.expect_http(
            "POST",
            WEBHOOK,
            content_json={},
            json_body={
                "text": f"[production] {text} {url}",
                "environment": "production",
                "kind": "deploy",
                "revision": REV,
                "result": "failure",
                "deploy_id": "dep-bad",
                "rolled_back_to": OLD,
                "rollback_deploy_id": "dep-rb",
                "failure": "health check failed",
                "gate_override": None,
                "summary": text,
                "build_url": url,
            },
        )
        self.expect_outcome(result=SUCCESS)
        self.expect_build_result_summary(
            {
                "step": "webhook: sent; e-mail: not configured; GitHub status: skipped (no github_token)",
                "build": text,
            }
        )
        yield self.run_step()


class NotifyUnconfiguredTest(DeployStepCase, unittest.TestCase):
    secrets: ClassVar[dict[str, str]] = {"render_deploy_hook": SECRETS["render_deploy_hook"]}

    @defer.inlineCallbacks
    def test_skips_each_channel_saying_why(self):
        self.setup_with(Notify(make_target(), name="notify"), deploy_attempted=True, deploy_revision=REV)
        self.build.results = SUCCESS
        self.expect_outcome(result=SUCCESS)
        yield self.run_step()
        self.assertEqual(
            self.get_nth_step(0).summary,
            "webhook: skipped (no notify_webhook_url secret); "
            "e-mail: not configured; GitHub status: skipped (no github_token)",
        )


class SmtpSink:
    """A minimal SMTP server on a free loopback port that keeps each message it receives."""

    def __init__(self):
        import socketserver
        import threading

        sink = self
        self.messages: list[dict[str, Any]] = []

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                def say(line):
                    self.wfile.write(line.encode() + b"\r\n")

                say("220 sink ready")
                envelope: dict[str, Any] = {"to": [], "data": b""}
                while True:
                    line = self.rfile.readline()
                    if not line:
                        return
                    verb = line.decode(errors="replace").strip().upper()
                    if verb.startswith(("EHLO", "HELO")):
                        say("250 sink")
                    elif verb.startswith("MAIL FROM"):
                        envelope["from"] = line.decode().split(":", 1)[1].strip()
                        say("250 ok")
                    elif verb.startswith("RCPT TO"):
                        envelope["to"].append(line.decode().split(":", 1)[1].strip())
                        say("250 ok")
                    elif verb == "DATA":
                        say("354 go ahead")
                        chunks = []
                        for data in iter(self.rfile.readline, b""):
                            if data in (b".\r\n", b".\n"):
                                break
                            chunks.append(data)
                        envelope["data"] = b"".join(chunks)
                        sink.messages.append(dict(envelope))
                        say("250 queued")
                    elif verb == "QUIT":
                        say("221 bye")
                        return
                    else:
                        say("250 ok")

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class SendMailTest(unittest.TestCase):
    """The real Twisted SMTP client against a local sink (real reactor, no fakes)."""

    def setUp(self):
        self.sink = SmtpSink()
        self.addCleanup(self.sink.stop)

    @defer.inlineCallbacks
    def test_message_is_delivered(self):
        from twisted.internet import reactor
        from twisted.internet.task import deferLater

        from namaskah_ci.steps.deploy.notify import send_mail

        yield send_mail(
            reactor,
            "127.0.0.1",
            self.sink.port,
            "ci@example.com",
            ["ops@example.com"],
            b"Subject: deployed\r\n\r\ndeployed 1234567\r\n",
        )
        yield deferLater(cast(IReactorTime, reactor), 1.0, lambda: None)  # the client closes its connection after QUIT
        (message,) = self.sink.messages
        self.assertEqual(message["to"], ["<ops@example.com>"])
        self.assertIn(b"deployed 1234567", message["data"])
