"""Verify a deployed environment: the health check and the smoke tests.

`HealthCheck` asks `<url>/health` up to `health_retries` times,
`health_interval_seconds` apart, until it answers 200. `SmokeTests` asks each
of `smoke_paths` once: each must answer 200 with JSON, and a page reporting a
commit (the reference service's `/api/diagnostics`, key `commit`) must report
the revision that was deployed. The same steps verify a rollback.
"""

from __future__ import annotations

import re
from collections.abc import Generator
from typing import Any

from twisted.internet import defer

from namaskah_ci.names import PROP_REVISION
from namaskah_ci.steps.deploy.base import DeployStep, DeployTarget, HttpFailure
from namaskah_ci.steps.results import CANCELLED, FAILURE, SUCCESS
from namaskah_ci.text import same_revision, short

COMMIT_KEY = "commit"
_SHA = re.compile(r"^[0-9a-fA-F]{7,40}$")


class HealthCheck(DeployStep):
    """GET <url>/health until 200, at most `health_retries` times."""

    def __init__(self, target: DeployTarget, result_property: str | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("name", "health check")
        super().__init__(target, **kwargs)
        self.result_property = result_property  # set to "healthy"/"unhealthy" (used after a rollback)

    @defer.inlineCallbacks
    def execute(self) -> Generator[Any, Any, int]:
        tries = self.target.health_retries
        url = self.target.page("/health")
        last = ""
        for attempt in range(1, tries + 1):
            try:
                answer = yield self.http("GET", url)
                last = f"HTTP {answer.code}"
                healthy = answer.code == 200
            except HttpFailure as exc:
                last, healthy = str(exc), False
            yield self.note(f"try {attempt}/{tries}: GET /health: {last}")
            if healthy:
                self.summary = f"healthy (try {attempt}/{tries})"
                self._record("healthy")
                return SUCCESS
            if attempt < tries:
                yield self.sleep(self.target.health_interval_seconds)
            if self.stopped:
                return CANCELLED
        self.summary = f"unhealthy after {tries} tries (last: {last})"
        self._record("unhealthy")
        if not self.result_property:
            self.fail_reason("health check failed")
        return FAILURE

    def _record(self, value: str) -> None:
        if self.result_property:
            self.setProperty(self.result_property, value, self.name)


class SmokeTests(DeployStep):
    """Every smoke path answers 200 with JSON; a reported commit is the deployed revision."""

    def __init__(self, target: DeployTarget, revision_property: str = PROP_REVISION, **kwargs: Any) -> None:
        kwargs.setdefault("name", "smoke tests")
        super().__init__(target, **kwargs)
        self.revision_property = revision_property

    @defer.inlineCallbacks
    def execute(self) -> Generator[Any, Any, int]:
        expected = self.getProperty(self.revision_property)
        problems: list[str] = []
        confirmed = False
        for path in self.target.smoke_paths:
            problem, commit_ok = yield self.check(path, expected)
            if problem:
                problems.append(problem)
                yield self.note(f"FAIL {problem}")
            confirmed = confirmed or commit_ok
        total = len(self.target.smoke_paths)
        if problems:
            self.summary = f"{len(problems)}/{total} failed: {'; '.join(problems)}"
            self.fail_reason(f"smoke test failed: {problems[0]}")
            return FAILURE
        self.summary = f"{total} endpoint(s) ok" + (f", serving {short(expected)}" if confirmed else "")
        return SUCCESS

    @defer.inlineCallbacks
    def check(self, path: str, expected: str | None) -> Generator[Any, Any, tuple[str, bool]]:
        """(problem or "", whether the page confirmed the expected commit)."""
        try:
            answer = yield self.http("GET", self.target.page(path))
        except HttpFailure as exc:
            return f"{path}: {exc}", False
        if answer.code != 200:
            return f"{path}: HTTP {answer.code}", False
        data = answer.json_or_none()
        if data is None:
            return f"{path}: not JSON", False
        commit = data.get(COMMIT_KEY) if isinstance(data, dict) else None
        if not isinstance(commit, str) or not _SHA.match(commit.strip()):
            yield self.note(f"ok   {path}: HTTP 200, JSON")
            return "", False
        if not same_revision(commit, expected):
            return f"{path}: serves commit {short(commit)}, expected {short(expected)}", False
        yield self.note(f"ok   {path}: HTTP 200, JSON, commit {short(commit)}")
        return "", True
