"""Render deploy steps: is the environment configured, call the deploy hook, wait until live.

`CheckDeployConfigured` ends the build SKIPPED ("not configured: no
render_deploy_hook secret") when the hook secret is missing. `HookStep` is the
one retry policy of every POST to Render (429: wait as told; 5xx or no
answer: exponential backoff with jitter; bounded); starting the deploy itself
is `start_deploy.StartDeploy`.
`WaitUntilLive` polls `GET /v1/services/{id}/deploys/{deployId}` with the API key
until `live` or a failed status, bounded by `live_timeout_seconds` (a deploy
still pending at the timeout is cancelled so it cannot go live after a
rollback); with no API key it waits `wait_seconds`. All HTTP is master-side
(`deploy_base.DeployStep`), so no hook URL, key or service id reaches a log.
"""

from __future__ import annotations

import datetime
import random
from collections.abc import Generator
from typing import Any

from twisted.internet import defer

from namaskah_ci.names import (
    PROP_DEPLOY_ID,
    PROP_ENVIRONMENT,
    PROP_HOOK_AT,
    PROP_NOT_CONFIGURED,
    PROP_REVISION,
)
from namaskah_ci.steps.deploy.base import DeployStep, DeployTarget, HttpAnswer, HttpFailure, segment
from namaskah_ci.steps.results import CANCELLED, FAILURE, SKIPPED, SUCCESS
from namaskah_ci.text import same_revision, short

LIVE = "live"
FAILED_STATUSES = ("build_failed", "update_failed", "canceled", "pre_deploy_failed")
RUNNING_STATUSES = ("created", "queued")
MAX_API_ERRORS = 5  # consecutive unusable answers from the Render API before giving up


def is_configured(step: Any) -> bool:
    """doStepIf for every step after `CheckDeployConfigured`."""
    return not step.getProperty(PROP_NOT_CONFIGURED)


def deploy_from(data: Any) -> dict[str, Any] | None:
    """The deploy object of a hook answer (`{"deploy": {...}}`) or an API answer (the object)."""
    if isinstance(data, dict) and isinstance(data.get("deploy"), dict):
        data = data["deploy"]
    if isinstance(data, dict) and isinstance(data.get("id"), str) and data["id"]:
        return data
    return None


def classify(status: str) -> str:
    """'live', 'failed', 'running' or 'unexpected'."""
    if status == LIVE:
        return "live"
    if status in FAILED_STATUSES:
        return "failed"
    if status.endswith("_in_progress") or status in RUNNING_STATUSES:
        return "running"
    return "unexpected"


def _created_at(deploy: dict[str, Any]) -> float | None:
    try:
        return datetime.datetime.fromisoformat(str(deploy.get("createdAt"))).timestamp()
    except ValueError:
        return None


TRIES = 6  # 5xx answers or no answer at all, before giving up
RATE_LIMIT_WAITS = 6  # 429 answers, each waited for
MAX_WAIT = 65.0  # seconds: one wait is never longer (Render's limits are per minute)


def backoff(attempt: int, base: float = 1.0, cap: float = 20.0) -> float:
    """Exponential backoff with jitter: a random delay between half and all of base * 2**attempt (≤ cap)."""
    longest: float = min(cap, base * (2**attempt))
    return random.uniform(0.5, 1.0) * longest


def retry_after(headers: dict[str, str]) -> float:
    """Seconds to wait from a 429's `Retry-After` or `Ratelimit-Reset` (2 when neither is usable)."""
    for name in ("retry-after", "ratelimit-reset"):
        try:
            return min(MAX_WAIT, max(0.0, float(headers.get(name, ""))))
        except ValueError:
            continue
    return 2.0


class HookStep(DeployStep):
    """A step that POSTs to Render (API or hooks) with one bounded retry policy.

    429: wait `Retry-After` / `Ratelimit-Reset` (at most RATE_LIMIT_WAITS times); 5xx or no answer:
    exponential backoff with jitter (at most TRIES tries); any other 4xx: fail at once."""

    @defer.inlineCallbacks
    def post_with_retries(
        self, url: str, label: str, headers: dict[str, str] | None = None, json_body: Any = None
    ) -> Generator[Any, Any, tuple[HttpAnswer | None, str]]:
        """(HttpAnswer, "") on a 2xx/3xx, (None, problem) otherwise."""
        problem, failures, waits = "", 0, 0
        while not self.stopped:
            answer: HttpAnswer | None
            try:
                answer = yield self.http("POST", url, headers=headers, json_body=json_body)
            except HttpFailure as exc:
                answer, problem = None, f"{label}: {exc}"
            if answer is not None and answer.code < 400:
                yield self.note(f"{label}: HTTP {answer.code} (try {failures + 1})")
                return answer, ""
            if answer is not None and answer.code == 429 and waits < RATE_LIMIT_WAITS:
                waits += 1
                delay = retry_after(answer.headers)
                yield self.note(f"{label}: HTTP 429 (rate limited): waiting {delay:.0f}s ({waits}/{RATE_LIMIT_WAITS})")
                yield self.sleep(delay)
                continue
            if answer is not None and answer.code < 500:
                yield self.note(f"{label}: HTTP {answer.code}, not retried")
                return None, f"{label} answered HTTP {answer.code}"
            if answer is not None:
                problem = f"{label} answered HTTP {answer.code}"
            failures += 1
            if failures >= TRIES:
                break
            delay = backoff(failures)
            yield self.note(f"try {failures}/{TRIES}: {problem}; again in {delay:.1f}s")
            yield self.sleep(delay)
        return None, f"{problem} ({failures} tries)"


class CheckDeployConfigured(DeployStep):
    """End the build SKIPPED, saying why, when the environment cannot be deployed (or rolled back)."""

    def __init__(self, target: DeployTarget, rollback: bool = False, **kwargs: Any) -> None:
        kwargs.setdefault("name", "configuration")
        super().__init__(target, **kwargs)
        self.rollback = rollback

    @defer.inlineCallbacks
    def execute(self) -> Generator[Any, Any, int]:
        target = self.target
        self.setProperty(PROP_ENVIRONMENT, target.environment, self.name)
        hook = yield self.secret(target.deploy_hook_secret)
        rollback_hook = yield self.secret(target.rollback_hook_secret)
        api = yield self.api_credentials()
        ways = [
            name for name, ok in (("Render API", api), ("rollback hook", rollback_hook), ("deploy hook", hook)) if ok
        ]
        yield self.note(f"environment: {target.environment} ({target.url})")
        yield self.note(f"deploy hook ({target.deploy_hook_secret}): {'set' if hook else 'missing'}")
        yield self.note(
            f"Render API ({target.api_key_secret} + {target.service_id_secret}): "
            + ("set" if api else f"missing, so no status polling: waits {target.wait_seconds}s")
        )
        yield self.note(f"rollback hook ({target.rollback_hook_secret}): {'set' if rollback_hook else 'missing'}")
        if self.rollback and not ways:
            reason = (
                f"not configured: no {target.api_key_secret}/{target.service_id_secret}, "
                f"{target.rollback_hook_secret} or {target.deploy_hook_secret} secret"
            )
        elif not self.rollback and not hook:
            reason = f"not configured: no {target.deploy_hook_secret} secret"
        else:
            self.summary = f"{target.environment}: " + (
                f"rollback by {ways[0]}" if self.rollback else f"deploy hook, rollback by {ways[0]}"
            )
            if not api:
                self.summary += f", no API key (waits {target.wait_seconds}s)"
            return SUCCESS
        self.setProperty(PROP_NOT_CONFIGURED, reason, self.name)
        self.summary = self.build_summary = reason
        return SKIPPED


class WaitUntilLive(DeployStep):
    """Poll the Render API until the deploy is live (or failed, or the timeout passes)."""

    def __init__(
        self,
        target: DeployTarget,
        deploy_id_property: str = PROP_DEPLOY_ID,
        revision_property: str = PROP_REVISION,
        since_property: str = PROP_HOOK_AT,
        failure_property: str | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("name", "wait until live")
        super().__init__(target, **kwargs)
        self.deploy_id_property = deploy_id_property
        self.revision_property = revision_property
        self.since_property = since_property
        self.failure_property = failure_property  # where a failure is recorded (default: deploy_failure)

    def failed(self, reason: str, summary: str | None = None) -> int:
        if self.failure_property:
            self.setProperty(self.failure_property, reason, self.name)
        else:
            self.fail_reason(reason)
        self.summary = summary or reason
        return FAILURE

    @defer.inlineCallbacks
    def execute(self) -> Generator[Any, Any, int]:
        credentials = yield self.api_credentials()
        if credentials is None:
            seconds = self.target.wait_seconds
            yield self.note(f"no Render API key/service id: waiting {seconds}s instead of polling")
            yield self.sleep(seconds)
            self.summary = f"waited {seconds}s (no Render API key: status not checked)"
            return SUCCESS
        started = self.now()
        deadline = started + self.target.live_timeout_seconds
        deploy_id = self.getProperty(self.deploy_id_property)
        if not deploy_id:
            deploy_id = yield self.find_deploy(credentials, deadline)
            if not deploy_id:
                if self.stopped:
                    return CANCELLED
                return self.failed(
                    f"no deploy of {short(self.getProperty(self.revision_property))} appeared on Render "
                    f"within {self.target.live_timeout_seconds}s"
                )
            self.setProperty(self.deploy_id_property, deploy_id, self.name)
        result: int = yield self.poll(credentials, deploy_id, started, deadline)
        return result

    @defer.inlineCallbacks
    def api_get(self, credentials: tuple[str, str], path: str) -> Generator[Any, Any, tuple[Any, str, bool]]:
        """(data, problem, fatal): the JSON of a 200, or what went wrong (fatal for a 4xx but 429)."""
        key, service = credentials
        try:
            answer = yield self.http("GET", self.api_url(service, path), headers=self.api_headers(key))
        except HttpFailure as exc:
            return None, f"Render API: {exc}", False
        if answer.code != 200:
            fatal = 400 <= answer.code < 500 and answer.code != 429
            return None, f"Render API answered HTTP {answer.code}", fatal
        data = answer.json_or_none()
        if data is None:
            return None, "Render API answered something that is not JSON", False
        return data, "", False

    @defer.inlineCallbacks
    def find_deploy(self, credentials: tuple[str, str], deadline: float) -> Generator[Any, Any, str | None]:
        """The id of the newest deploy of our revision created since the hook: the hook queued it."""
        revision = self.getProperty(self.revision_property)
        since = (self.getProperty(self.since_property) or self.now()) - 120
        yield self.note(f"no deploy id from the hook: looking for the deploy of {short(revision)}")
        errors = 0
        while not self.stopped:
            data, problem, fatal = yield self.api_get(credentials, "/deploys?limit=20")
            if fatal:
                return None
            entries = data if isinstance(data, list) else []
            if data is not None and not isinstance(data, list):
                problem = "Render API: deploy list is not a list"
            for entry in entries:
                deploy = deploy_from(entry)
                commit = (deploy or {}).get("commit") or {}
                created = _created_at(deploy or {})
                if deploy and same_revision(commit.get("id"), revision) and (created is None or created >= since):
                    found: str = deploy["id"]  # (deploy_from: a non-empty string)
                    yield self.note(f"found {found} (status {deploy.get('status')})")
                    return found
            errors = errors + 1 if problem else 0
            if problem:
                yield self.note(problem)
            if errors >= MAX_API_ERRORS or self.now() >= deadline:
                return None
            yield self.sleep(self.target.poll_interval_seconds)
        return None

    @defer.inlineCallbacks
    def poll(
        self, credentials: tuple[str, str], deploy_id: str, started: float, deadline: float
    ) -> Generator[Any, Any, int]:
        errors = 0
        last_status = "unknown"
        while True:
            data, problem, fatal = yield self.api_get(credentials, f"/deploys/{segment(deploy_id)}")
            deploy = deploy_from(data) if data is not None else None
            status = deploy.get("status") if deploy else None
            if fatal:
                return self.failed(problem, f"{deploy_id}: {problem}")
            if data is not None and not isinstance(status, str):
                problem = "Render API answer has no deploy status"
            if problem or not isinstance(status, str):  # (no problem: there is a status)
                errors += 1
                yield self.note(f"{problem} ({errors}/{MAX_API_ERRORS})")
                if errors >= MAX_API_ERRORS:
                    return self.failed(f"Render API unusable: {problem}", f"{deploy_id}: {problem}")
            else:
                errors = 0
                if status != last_status:
                    yield self.note(f"{deploy_id}: {status} after {int(self.now() - started)}s")
                last_status = status
                kind = classify(status)
                if kind == "live":
                    self.summary = f"{deploy_id} live after {int(self.now() - started)}s"
                    return SUCCESS
                if kind == "failed":
                    return self.failed(f"Render deploy {status}", f"{deploy_id}: {status}")
                if kind == "unexpected":
                    return self.failed(f"Render deploy ended {status}", f"{deploy_id}: {status}")
            if self.now() >= deadline:
                yield self.cancel_pending(credentials, deploy_id)
                return self.failed(
                    f"not live after {self.target.live_timeout_seconds}s (last status: {last_status})",
                    f"{deploy_id} not live after {self.target.live_timeout_seconds}s ({last_status}), cancelled",
                )
            yield self.sleep(self.target.poll_interval_seconds)
            if self.stopped:
                return CANCELLED

    @defer.inlineCallbacks
    def cancel_pending(self, credentials: tuple[str, str], deploy_id: str) -> Generator[Any, Any, None]:
        """Best effort: a deploy that never went live must not go live after the rollback."""
        key, service = credentials
        try:
            answer = yield self.http(
                "POST", self.api_url(service, f"/deploys/{segment(deploy_id)}/cancel"), headers=self.api_headers(key)
            )
            yield self.note(f"cancel {deploy_id}: HTTP {answer.code}")
        except HttpFailure as exc:
            yield self.note(f"cancel {deploy_id}: {exc}")
