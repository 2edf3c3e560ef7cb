"""What every deploy and rollback step shares: the environment's target, property names,
master-side HTTP that never logs a URL, secrets, sleeping and the step's summary.

Deploy steps run on the master (no worker command): HTTP goes through Buildbot's
`HTTPSession` (txrequests in a thread pool), so the reactor never blocks and no
secret is ever handed to a worker's environment. An `HttpFailure` carries only
the kind of error ("connection refused", "timed out"), never the URL or the
exception text, because a deploy hook's URL is itself the secret. Every line a
step writes to its log also passes Buildbot's secret redaction.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Generator
from typing import Any
from urllib.parse import quote

from buildbot.process import buildstep
from buildbot.process.properties import Secret
from buildbot.util import asyncSleep
from buildbot.util.httpclientservice import HTTPSession
from twisted.internet import defer

from namaskah_ci.names import PROP_FAILURE, RENDER_API_KEY
from namaskah_ci.steps.results import CANCELLED, SKIPPED, SUCCESS, WARNINGS


@dataclasses.dataclass(frozen=True)
class DeployTarget:
    """One environment: where it lives, which secrets deploy it, how long to wait."""

    environment: str
    branch: str
    url: str
    deploy_hook_secret: str
    rollback_hook_secret: str
    service_id_secret: str
    api_url: str
    wait_seconds: int
    health_retries: int
    health_interval_seconds: int
    smoke_paths: tuple[str, ...]
    live_timeout_seconds: int
    poll_interval_seconds: int
    request_timeout_seconds: int
    deploy_builder: str
    rollback_builder: str
    api_key_secret: str = RENDER_API_KEY

    @property
    def history_builders(self) -> tuple[str, str]:
        return (self.deploy_builder, self.rollback_builder)

    def page(self, path: str) -> str:
        return self.url.rstrip("/") + path


class HttpFailure(Exception):
    """No HTTP answer; the message names the kind of failure only (never a URL)."""


@dataclasses.dataclass(frozen=True)
class HttpAnswer:
    code: int
    body: bytes
    headers: dict[str, str] = dataclasses.field(default_factory=dict)  # lower-cased names: Retry-After, Ratelimit-*

    def json(self) -> Any:
        """The body as JSON; ValueError when it is not."""
        return json.loads(self.body.decode("utf-8"))

    def json_or_none(self) -> Any:
        try:
            return self.json()
        except (ValueError, UnicodeDecodeError):
            return None


def describe_http_error(exc: BaseException) -> str:
    """A URL-free description of a failed request."""
    name = type(exc).__name__
    if "Timeout" in name or isinstance(exc, defer.TimeoutError):
        return "timed out"
    if "SSL" in name:
        return "TLS error"
    if "Connection" in name or isinstance(exc, ConnectionError):
        return "connection failed"
    return f"request failed ({name})"


RATE_HEADERS = ("retry-after", "ratelimit-reset", "ratelimit-remaining", "ratelimit-limit")


def response_headers(response: Any) -> dict[str, str]:
    """The rate-limit headers of an answer (txrequests or treq underneath Buildbot's HTTPSession)."""
    raw = getattr(response, "_res", None)
    headers: Any = getattr(raw, "headers", None)  # twisted's Headers (treq) or a requests' mapping
    found = {}
    for name in RATE_HEADERS:
        value = None
        if hasattr(headers, "getRawHeaders"):
            values = headers.getRawHeaders(name)
            value = values[0] if values else None
        elif hasattr(headers, "get"):
            value = headers.get(name)
        if value is not None:
            found[name] = value.decode() if isinstance(value, bytes) else str(value)
    return found


def segment(value: str) -> str:
    """A value made safe to put in a URL path or query (a typed revision, an id from an answer)."""
    return quote(str(value), safe="")


def with_ref(hook_url: str, revision: str) -> str:
    """The hook URL with `ref=<revision>` appended to its query (the revision URL-quoted)."""
    base, _, fragment = hook_url.partition("#")
    joined = f"{base}{'&' if '?' in base else '?'}ref={segment(revision)}"
    return f"{joined}#{fragment}" if fragment else joined


class DeployStep(buildstep.BuildStep):
    """Base of the master-side deploy steps: HTTP, secrets, sleep, log and summary."""

    def __init__(self, target: DeployTarget, **kwargs: Any) -> None:
        kwargs.setdefault("updateBuildSummaryPolicy", False)
        super().__init__(**kwargs)
        self.target = target
        self.summary = ""
        self.build_summary = ""
        self._details: Any = None  # the step's `details` log, once a line was written
        self._session: Any = None  # Buildbot's HTTPSession, while the step runs

    # -- secrets -------------------------------------------------------------------------
    @defer.inlineCallbacks
    def secret(self, name: str) -> Generator[Any, Any, str | None]:
        """The secret's value (registered for redaction), or None when it is not configured."""
        try:
            value = yield self.build.render(Secret(name))
        except KeyError:
            return None
        value = (value or "").strip()
        return value or None

    @defer.inlineCallbacks
    def api_credentials(self) -> Generator[Any, Any, tuple[str, str] | None]:
        """(api key, service id) when both secrets exist, else None."""
        key = yield self.secret(self.target.api_key_secret)
        service = yield self.secret(self.target.service_id_secret)
        if key and service:
            return key, service
        return None

    # -- HTTP ----------------------------------------------------------------------------
    @defer.inlineCallbacks
    def http(
        self, method: str, url: str, headers: dict[str, str] | None = None, json_body: Any = None
    ) -> Generator[Any, Any, HttpAnswer]:
        """One request; an HttpAnswer for any HTTP status, HttpFailure when there is no answer."""
        if self._session is None:
            self._session = HTTPSession(self.master.httpservice, "")
        session = self._session
        kwargs: dict[str, Any] = {"timeout": self.target.request_timeout_seconds}
        if headers:
            kwargs["headers"] = dict(headers)
        if json_body is not None:
            kwargs["json"] = json_body
        try:
            response = yield getattr(session, method.lower())(url, **kwargs)
            body = yield response.content()
        except Exception as exc:  # every failure becomes a URL-free HttpFailure
            raise HttpFailure(describe_http_error(exc)) from None
        return HttpAnswer(int(response.code), body or b"", response_headers(response))

    def release_http(self) -> None:
        """Close this step's connection pool (Buildbot keeps every txrequests session until shutdown)."""
        session, self._session = self._session, None
        pooled = getattr(session, "_txrequests_session", None)
        if pooled is None:
            return
        pooled.close()
        kept = getattr(self.master.httpservice, "_txrequests_sessions", None)
        if isinstance(kept, list) and pooled in kept:
            kept.remove(pooled)

    def api_headers(self, key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}", "Accept": "application/json"}

    def api_url(self, service_id: str, path: str) -> str:
        return f"{self.target.api_url.rstrip('/')}/services/{service_id}{path}"

    # -- time ----------------------------------------------------------------------------
    def now(self) -> float:
        seconds: float = self.master.reactor.seconds()
        return seconds

    def sleep(self, seconds: float) -> defer.Deferred[None]:
        sleeping: defer.Deferred[None] = asyncSleep(max(0.0, seconds), reactor=self.master.reactor)
        return sleeping

    # -- log and summary -----------------------------------------------------------------
    @defer.inlineCallbacks
    def note(self, line: str) -> Generator[Any, Any, None]:
        """Append a line to the step's `details` log (after secret redaction)."""
        if self._details is None:
            self._details = yield self.addLog("details")
        text = self.build.properties.cleanupTextFromSecrets(line)
        yield self._details.addStdout(text + "\n")

    @defer.inlineCallbacks
    def finish_log(self) -> Generator[Any, Any, None]:
        if self._details is not None:
            yield self._details.finish()

    def fail_reason(self, reason: str) -> None:
        """Record the first failure of the build, for the notification and the build summary."""
        if not self.getProperty(PROP_FAILURE):
            self.setProperty(PROP_FAILURE, reason, self.name)

    def cancelled(self) -> bool:
        return bool(self.stopped)

    def getResultSummary(self) -> dict[str, str]:
        if not self.summary:
            default: dict[str, str] = super().getResultSummary()
            return default
        text = self.summary
        if self.results == CANCELLED:
            text += " (cancelled)"
        summary = {"step": text}
        if self.build_summary:
            summary["build"] = self.build_summary
        return summary

    @defer.inlineCallbacks
    def run(self) -> Generator[Any, Any, int]:
        try:
            result: int = yield self.execute()
        finally:
            self.release_http()
            yield self.finish_log()
        if self.stopped and result in (SUCCESS, WARNINGS, SKIPPED):
            return CANCELLED
        return result

    def execute(self) -> defer.Deferred[int]:  # pragma: no cover - every subclass defines it
        raise NotImplementedError
