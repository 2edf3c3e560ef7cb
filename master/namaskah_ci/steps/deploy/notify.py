"""Tell people how a deploy or rollback ended, and set the build's one-line outcome.

`Notify` runs last in every deploy and rollback build that tried something
(`deploy_attempted`). It composes the outcome ("deployed abc1234, health check
failed, rolled back to def5678 (healthy)"), makes it the build's summary, and
sends it:
- as a JSON POST to the `notify_webhook_url` secret: a Slack-compatible `text`
  plus `environment`, `revision`, `result`, `deploy_id`, `rolled_back_to`,
  `build_url` and more;
- by e-mail to `[notify] email_to` when set (Twisted's SMTP client);
- as a GitHub commit status (`deploy/<environment>`) when `github_token` exists
  and the repository is on GitHub.
A channel that fails makes the step (and the build) WARNINGS, never FAILURE.
"""

from __future__ import annotations

import email.message
import re
from collections.abc import Generator
from typing import Any

from buildbot.reporters.utils import getURLForBuild
from twisted.internet import defer

from namaskah_ci.names import (
    GITHUB_TOKEN,
    NOTIFY_WEBHOOK_URL,
    PROP_ATTEMPTED,
    PROP_DEPLOY_ID,
    PROP_ENVIRONMENT,
    PROP_FAILURE,
    PROP_GATE_OVERRIDE,
    PROP_REVISION,
    PROP_ROLLBACK_DEPLOY_ID,
    PROP_ROLLBACK_HEALTH,
    PROP_ROLLBACK_LIVE,
    PROP_ROLLBACK_RESULT,
    PROP_ROLLBACK_STARTED,
    PROP_ROLLED_BACK_TO,
    PROP_STARTED,
)
from namaskah_ci.steps import hide_skipped
from namaskah_ci.steps.deploy.base import DeployStep, DeployTarget, HttpFailure, segment
from namaskah_ci.steps.results import FAILURE, SUCCESS, WARNINGS
from namaskah_ci.text import short

_GITHUB_SLUG = re.compile(r"github\.com[:/]+([\w.-]+)/([\w.-]+?)(?:\.git)?/*$")


def github_slug(repo_url: str, configured: str = "") -> str | None:
    """owner/name of a GitHub repository, from the setting or the repository URL."""
    if configured:
        return configured
    found = _GITHUB_SLUG.search(repo_url or "")
    return f"{found.group(1)}/{found.group(2)}" if found else None


def attempted(step: Any) -> bool:
    return bool(step.getProperty(PROP_ATTEMPTED))


def rollback_outcome(props: Any) -> str:
    result: str | None = props.getProperty(PROP_ROLLBACK_RESULT)
    if result:
        return result
    if not props.getProperty(PROP_ROLLBACK_STARTED):
        return "not rolled back"
    details = [props.getProperty(PROP_ROLLBACK_LIVE), props.getProperty(PROP_ROLLBACK_HEALTH) or "health unknown"]
    return f"rolled back to {short(props.getProperty(PROP_ROLLED_BACK_TO))} ({'; '.join(d for d in details if d)})"


def outcome_text(props: Any, rollback_build: bool, ok: bool) -> str:
    """The one line a person reads: what was deployed, what failed, where production is now."""
    env = props.getProperty(PROP_ENVIRONMENT) or "?"
    revision = short(props.getProperty(PROP_REVISION))
    failure = props.getProperty(PROP_FAILURE) or "failed"
    if rollback_build:
        if ok:
            return f"rolled back {env} to {revision} (healthy)"
        return f"rollback of {env} to {revision} failed: {failure}"
    if ok:
        text = f"deployed {revision} to {env}: live, healthy, smoke tests passed"
        return text + (" (pipeline gate overridden)" if props.getProperty(PROP_GATE_OVERRIDE) else "")
    if not props.getProperty(PROP_STARTED):
        return f"deploy of {revision} to {env} failed: {failure}"
    return f"deployed {revision}, {failure}, {rollback_outcome(props)}"


def send_mail(
    reactor: Any, host: str, port: int, sender: str, recipients: list[str], message: bytes
) -> defer.Deferred[Any]:
    """Send one message with Twisted's SMTP client (a Deferred)."""
    from twisted.mail import smtp

    sending: defer.Deferred[Any] = smtp.sendmail(  # type: ignore[no-untyped-call]  # unannotated in Twisted
        host, sender, recipients, message, port=port, reactor=reactor
    )
    return sending


class Notify(DeployStep):
    """Compose the outcome, make it the build summary, send it everywhere configured."""

    mailer = staticmethod(send_mail)

    def __init__(
        self,
        target: DeployTarget,
        rollback_build: bool = False,
        email_to: tuple[str, ...] = (),
        email_from: str = "namaskah-ci@localhost",
        smtp_host: str = "localhost",
        smtp_port: int = 25,
        github_api_url: str = "https://api.github.com",
        github_repository: str | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("name", "notify")
        kwargs.setdefault("alwaysRun", True)
        kwargs.setdefault("flunkOnFailure", False)
        kwargs.setdefault("warnOnFailure", True)
        kwargs.setdefault("doStepIf", attempted)
        kwargs.setdefault("hideStepIf", hide_skipped)
        super().__init__(target, **kwargs)
        self.rollback_build = rollback_build
        self.email_to = tuple(email_to)
        self.email_from = email_from
        self.smtp_host = smtp_host
        self.smtp_port = smtp_port
        self.github_api_url = github_api_url.rstrip("/")
        self.github_repository = github_repository

    @defer.inlineCallbacks
    def build_url(self) -> Generator[Any, Any, str]:
        try:
            builderid = yield self.build.getBuilderId()
        except AttributeError:
            builderid = getattr(self.build.builder, "builderid", None)
        url: str = getURLForBuild(self.master, builderid, self.build.number)
        return url

    @defer.inlineCallbacks
    def execute(self) -> Generator[Any, Any, int]:
        ok = self.build.results in (SUCCESS, WARNINGS)
        props = self.build.getProperties()
        text = outcome_text(props, self.rollback_build, ok)
        self.build_summary = text
        url = yield self.build_url()
        payload = {
            "text": f"[{self.target.environment}] {text} {url}",
            "environment": self.target.environment,
            "kind": "rollback" if self.rollback_build else "deploy",
            "revision": props.getProperty(PROP_REVISION),
            "result": "success" if ok else "failure",
            "deploy_id": props.getProperty(PROP_DEPLOY_ID),
            "rolled_back_to": props.getProperty(PROP_ROLLED_BACK_TO),
            "rollback_deploy_id": props.getProperty(PROP_ROLLBACK_DEPLOY_ID),
            "failure": props.getProperty(PROP_FAILURE),
            "gate_override": props.getProperty(PROP_GATE_OVERRIDE),
            "summary": text,
            "build_url": url,
        }
        yield self.note(f"outcome: {text}")
        outcomes: list[str] = []
        for channel in (self.webhook, self.mail, self.github_status):
            sent = yield channel(payload)
            outcomes.append(sent)
        failed = [o for o in outcomes if o.startswith("FAILED")]
        self.summary = "; ".join(outcomes)
        return FAILURE if failed else SUCCESS

    @defer.inlineCallbacks
    def webhook(self, payload: dict[str, Any]) -> Generator[Any, Any, str]:
        url = yield self.secret(NOTIFY_WEBHOOK_URL)
        if not url:
            return f"webhook: skipped (no {NOTIFY_WEBHOOK_URL} secret)"
        problem = ""
        for attempt in (1, 2):
            try:
                answer = yield self.http("POST", url, json_body=payload)
            except HttpFailure as exc:
                problem = str(exc)
            else:
                if answer.code < 300:
                    yield self.note(f"webhook: HTTP {answer.code}")
                    return "webhook: sent"
                problem = f"HTTP {answer.code}"
            yield self.note(f"webhook try {attempt}/2: {problem}")
            if attempt == 1:
                yield self.sleep(2)
        return f"FAILED webhook: {problem}"

    @defer.inlineCallbacks
    def mail(self, payload: dict[str, Any]) -> Generator[Any, Any, str]:
        if not self.email_to:
            return "e-mail: not configured"
        message = email.message.EmailMessage()
        message["From"] = self.email_from
        message["To"] = ", ".join(self.email_to)
        message["Subject"] = f"[Namaskah CI] {payload['environment']} {payload['kind']} {payload['result']}: " + (
            short(payload["revision"])
        )
        lines = [payload["summary"], ""]
        for key in ("environment", "revision", "result", "deploy_id", "rolled_back_to", "failure", "build_url"):
            lines.append(f"{key}: {payload.get(key) or '-'}")
        message.set_content("\n".join(lines) + "\n")
        try:
            yield self.mailer(
                self.master.reactor,
                self.smtp_host,
                self.smtp_port,
                self.email_from,
                list(self.email_to),
                message.as_bytes(),
            )
        except Exception as exc:  # reported, never raised
            yield self.note(f"e-mail: {type(exc).__name__}")
            return f"FAILED e-mail: {type(exc).__name__}"
        return f"e-mail: sent to {len(self.email_to)}"

    @defer.inlineCallbacks
    def github_status(self, payload: dict[str, Any]) -> Generator[Any, Any, str]:
        token = yield self.secret(GITHUB_TOKEN)
        if not token:
            return "GitHub status: skipped (no github_token)"
        if not self.github_repository or not payload["revision"]:
            return "GitHub status: skipped (not a GitHub repository)"
        url = f"{self.github_api_url}/repos/{self.github_repository}/statuses/{segment(payload['revision'])}"
        body = {
            "state": payload["result"],
            "context": f"deploy/{payload['environment']}",
            "description": payload["summary"][:140],
            "target_url": payload["build_url"],
        }
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json"}
        try:
            answer = yield self.http("POST", url, headers=headers, json_body=body)
        except HttpFailure as exc:
            return f"FAILED GitHub status: {exc}"
        if answer.code >= 300:
            return f"FAILED GitHub status: HTTP {answer.code}"
        return "GitHub status: set"
