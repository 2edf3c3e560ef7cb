"""Change hooks under `/change_hook/`: GitHub (HMAC-signed) and an admin-only `base` hook.

`/change_hook/github` (enabled when the `webhook_secret` secret exists) is the
stock GitHub dialect in strict mode with a stricter event handler:
- a signature is required: `X-Hub-Signature-256` (HMAC-SHA256) when GitHub
  sends it, else `X-Hub-Signature` (HMAC-SHA1); compared in constant time;
- the payload must be a JSON object whose fields have the types GitHub
  documents; anything else is a 400, never the stock handler's 500;
- only `ping`, `push` and `pull_request` events are accepted.
A verified push makes the git pollers poll at once, so the push is built
without waiting for the poll interval and the commit is recorded exactly once
(by the poller, as if it had found it itself); pull requests become changes on
`refs/pull/<n>/merge`.

`/change_hook/base` takes Buildbot's plain form fields, and only with HTTP
basic credentials of a user in `[www] admins` (checked against the
`admin_htpasswd` secret, under the web login's failed-login limits).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from twisted.internet import defer
from twisted.python import log

from buildbot.changes.gitpoller import GitPoller
from buildbot.process.properties import Properties
from buildbot.www.hooks.base import BaseHookHandler
from buildbot.www.hooks.github import GitHubEventHandler

from namaskah_ci.auth import SecretHtpasswdChecker, client_address, login_limiter

ACCEPTED_EVENTS = ("ping", "push", "pull_request")
MAX_BODY_BYTES = 5 * 1024 * 1024


class PayloadError(ValueError):
    """The request is refused; the change hook answers 400 with this message."""


def _require(value: Any, kind: type | tuple, where: str, optional: bool = False) -> Any:
    if value is None and optional:
        return value
    if isinstance(value, bool) and kind in (int, (int, float)):
        raise PayloadError(f"malformed payload: {where} must be {getattr(kind, '__name__', kind)}")
    if not isinstance(value, kind):
        name = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise PayloadError(f"malformed payload: {where} must be {name}")
    return value


def _person(value: Any, where: str) -> None:
    _require(value, dict, where)
    for key in ("name", "email"):
        _require(value.get(key), str, f"{where}.{key}")


def _commit(value: Any, where: str) -> None:
    from dateutil.parser import parse as parse_date

    _require(value, dict, where)
    for key in ("id", "message", "timestamp", "url"):
        _require(value.get(key), str, f"{where}.{key}")
    try:
        parse_date(value["timestamp"])
    except (ValueError, OverflowError):
        raise PayloadError(f"malformed payload: {where}.timestamp is not a date") from None
    _person(value.get("author"), f"{where}.author")
    _person(value.get("committer"), f"{where}.committer")
    for kind in ("added", "modified", "removed"):
        files = _require(value.get(kind, []), list, f"{where}.{kind}")
        for name in files:
            _require(name, str, f"{where}.{kind}[]")
    _require(value.get("distinct", True), bool, f"{where}.distinct")


def _repository(value: Any) -> None:
    _require(value, dict, "repository")
    for key in ("name", "full_name", "html_url"):
        _require(value.get(key), str, f"repository.{key}")


def validate_push(payload: dict) -> None:
    """Raise PayloadError unless `payload` is a push event the GitHub handler can process."""
    _require(payload.get("ref"), str, "ref")
    _repository(payload.get("repository"))
    deleted = _require(payload.get("deleted", False), bool, "deleted")
    _require(payload.get("created", False), bool, "created")
    commits = _require(payload.get("commits", []), list, "commits")
    for index, commit in enumerate(commits):
        _commit(commit, f"commits[{index}]")
    head = payload.get("head_commit")
    if not deleted:
        _commit(head, "head_commit")


def validate_pull_request(payload: dict) -> None:
    _require(payload.get("number"), int, "number")
    _require(payload.get("action"), str, "action")
    _repository(payload.get("repository"))
    pull = _require(payload.get("pull_request"), dict, "pull_request")
    for key in ("title", "created_at"):
        _require(pull.get(key), str, f"pull_request.{key}")
    _require(pull.get("body"), str, "pull_request.body", optional=True)
    _require(pull.get("commits"), int, "pull_request.commits")
    _require(_require(pull.get("head"), dict, "pull_request.head").get("sha"), str, "pull_request.head.sha")
    base = _require(pull.get("base"), dict, "pull_request.base")
    _require(base.get("ref"), str, "pull_request.base.ref")
    _require(_require(base.get("repo"), dict, "pull_request.base.repo").get("full_name"), str, "base.repo.full_name")
    links = _require(pull.get("_links"), dict, "pull_request._links")
    _require(_require(links.get("html"), dict, "pull_request._links.html").get("href"), str, "_links.html.href")
    _require(_require(payload.get("sender"), dict, "sender").get("login"), str, "sender.login")


def verify_signature(secret: str, body: bytes, sha256_header: str | None, sha1_header: str | None) -> None:
    """Raise PayloadError unless a signature header is present and matches `body`."""
    if sha256_header:
        header, digestmod, algorithm = sha256_header, hashlib.sha256, "sha256"
    elif sha1_header:
        header, digestmod, algorithm = sha1_header, hashlib.sha1, "sha1"
    else:
        raise PayloadError("request has no signature (X-Hub-Signature-256)")
    kind, _, received = header.partition("=")
    if kind != algorithm or not received:
        raise PayloadError("signature header is malformed")
    expected = hmac.new(secret.encode("utf-8"), body, digestmod).hexdigest()
    if not hmac.compare_digest(expected, received.strip().lower()):
        raise PayloadError("signature mismatch")


def _header(request: Any, name: bytes) -> str | None:
    value = request.getHeader(name)
    return value.decode("latin-1") if isinstance(value, bytes) else value


class StrictGitHubEventHandler(GitHubEventHandler):
    """GitHubEventHandler that verifies SHA-256 signatures, validates payloads and polls on push."""

    @defer.inlineCallbacks
    def process(self, request):
        event = _header(request, b"X-GitHub-Event")
        try:
            payload = yield self._get_payload(request)
            if event not in ACCEPTED_EVENTS:
                raise PayloadError(f"event {event!r} is not handled (accepted: {', '.join(ACCEPTED_EVENTS)})")
            result = yield getattr(self, f"handle_{event}")(payload, event)
        except PayloadError as exc:
            log.msg(f"GitHub hook: refused {event or 'unnamed'} event: {exc}")
            raise
        except (KeyError, TypeError, AttributeError, IndexError, ValueError, OverflowError) as exc:
            log.msg(f"GitHub hook: refused {event or 'unnamed'} event: malformed payload ({type(exc).__name__})")
            raise PayloadError(f"malformed payload ({type(exc).__name__})") from None
        return result

    @defer.inlineCallbacks
    def _get_payload(self, request):
        body = request.content.read(MAX_BODY_BYTES + 1)
        if len(body) > MAX_BODY_BYTES:
            raise PayloadError("payload too large")
        props = Properties()
        props.master = self.master
        secret = yield props.render(self._secret)
        if not secret:
            raise PayloadError("the webhook secret is not configured")
        verify_signature(
            secret, body, _header(request, b"X-Hub-Signature-256"), _header(request, b"X-Hub-Signature")
        )
        content_type = (_header(request, b"Content-Type") or "").split(";")[0].strip()
        try:
            if content_type == "application/json":
                payload = json.loads(body)
            elif content_type == "application/x-www-form-urlencoded":
                payload = json.loads(request.args[b"payload"][0])
            else:
                raise PayloadError(f"unsupported content type {content_type!r}")
        except (KeyError, IndexError, UnicodeDecodeError, json.JSONDecodeError):
            raise PayloadError("payload is not JSON") from None
        except (RecursionError, ValueError):  # nested too deeply, or an integer of thousands of digits
            raise PayloadError("payload is not JSON GitHub sends (too deeply nested or too large a number)") from None
        if not isinstance(payload, dict):
            raise PayloadError("payload must be a JSON object")
        return payload

    def git_pollers(self) -> list:
        change_svc = getattr(self.master, "change_svc", None)
        return [source for source in (change_svc or []) if isinstance(source, GitPoller)]

    def handle_push(self, payload, event):
        validate_push(payload)
        pollers = self.git_pollers()
        if not pollers:
            return super().handle_push(payload, event)
        log.msg(f"GitHub hook: push to {payload['ref']}: polling {', '.join(p.name for p in pollers)} now")
        for poller in pollers:
            poller.force()
        return [], "git"

    def handle_pull_request(self, payload, event):
        validate_pull_request(payload)
        return super().handle_pull_request(payload, event)


class AdminBaseHookHandler(BaseHookHandler):
    """Buildbot's `base` hook, for requests with HTTP basic credentials of an admin."""

    def __init__(self, master, options):
        super().__init__(master, options)
        self.admins = set(options.get("admins", ()))
        self.checker = SecretHtpasswdChecker(master=master)

    @defer.inlineCallbacks
    def getChanges(self, request):
        username = request.getUser().decode("utf-8", "replace")
        password = request.getPassword()
        if not username or not password:
            raise PayloadError("the base change hook needs an admin's credentials (HTTP basic auth)")
        limiter, address = login_limiter(self.master), client_address(request)
        wait = limiter.attempt(username, address)  # the web login's counters: the same passwords
        if wait:
            log.msg(f"base change hook: refused {username[:100]!r} from {address}: too many failed logins")
            raise PayloadError(limiter.refusal(wait))
        ok = yield self.checker.check(username, password)
        if ok:
            limiter.succeeded(username, address)
        if not ok or username not in self.admins:
            log.msg(f"base change hook: refused credentials for {username!r}")
            raise PayloadError("the base change hook needs an admin's credentials (HTTP basic auth)")
        try:
            changes, src = yield super().getChanges(request)
        except (TypeError, UnicodeDecodeError, AttributeError):
            raise PayloadError("malformed change fields") from None
        for change in changes:
            _require(change["files"], list, "files")
            for name in change["files"]:
                _require(name, str, "files[]")
            _require(change["properties"], dict, "properties")
            if not change.get("revision") and not change.get("branch"):
                raise PayloadError("a change needs a revision or a branch")
        return changes, src
