"""Change hooks under `/change_hook/`: GitHub (HMAC-signed) and an admin-only `base` hook.

`/change_hook/github` (when the `webhook_secret` secret exists), `GitHubHook`:
- a signature is required (`webhook_payloads.verify_signature`); the payload
  must be JSON of the types GitHub documents, at most `[github]
  max_payload_bytes` (GitHub sends up to 25 MB; the web server refuses a
  larger body before reading it, fixes/request_limits.py, and the hook
  refuses a larger declared `Content-Length` without reading); anything
  else is a 400;
- it answers at once, whatever GitHub's API does (it never calls it), with a
  body saying what it recorded ("push to main at 1a2b3c4: polling now");
  the slow work (fetching a pull request's merge result) runs after answering;
- `ping` and events it does not use get a 2xx ("ignored"); a redelivery (an
  `X-GitHub-Delivery` id already processed, `github/deliveries.py`) is ignored;
- a push makes the git pollers poll at once (the poller records the commits
  exactly once, as if it had found them itself; a new branch at an existing
  commit builds its head once: `triggers/changes.py`); `[skip ci]` / `[ci skip]` in the
  head commit: no pipeline (`triggers/schedulers.py` drops the change);
- `pull_request` opened / reopened / synchronize record the merge result,
  closed cancels the PR's builds (`github/pull_requests.py`); the event is saved
  before answering, so a crash loses none (`github/pending_events.py`).

`/change_hook/base` takes Buildbot's plain form fields, and only with HTTP
basic credentials of a user in `[www] admins` (checked against the
`admin_htpasswd` secret, under the web login's failed-login limits).
"""

from __future__ import annotations

import json
from collections.abc import Generator
from typing import Any

from buildbot.changes.gitpoller import GitPoller
from buildbot.process.properties import Properties
from buildbot.www.hooks.base import BaseHookHandler
from twisted.internet import defer
from twisted.python import log
from twisted.python.failure import Failure

from namaskah_ci.access.auth import SecretHtpasswdChecker, client_address, login_limiter
from namaskah_ci.fixes.change_hook_answer import ANSWER_ATTRIBUTE
from namaskah_ci.github import deliveries, pending_events
from namaskah_ci.github.payloads import (
    PayloadError,
    PullRequest,
    _require,
    validate_push,
    verify_signature,
)
from namaskah_ci.github.pull_requests import PullRequests
from namaskah_ci.text import short
from namaskah_ci.triggers.changes import skips_ci

ACCEPTED_EVENTS = ("ping", "push", "pull_request")
BUILT_ACTIONS = ("opened", "reopened", "synchronize")
DEFAULT_MAX_BYTES = 25 * 1024 * 1024  # GitHub caps payloads at 25 MB


def _header(request: Any, name: bytes) -> str | None:
    value = request.getHeader(name)
    return value.decode("latin-1") if isinstance(value, bytes) else value


class GitHubHook(BaseHookHandler):
    """The GitHub dialect (see the module docstring); options: `secret`, `pipeline_config`,
    `max_payload_bytes`, `repository` (owner/name; "" takes any), `merge_ref_waits`,
    `fork_approval` (local mode: a fork's pipeline waits for an admin)."""

    def __init__(self, master: Any, options: dict[str, Any]) -> None:
        super().__init__(master, options)
        self.secret = options["secret"]
        self.max_bytes = int(options.get("max_payload_bytes") or DEFAULT_MAX_BYTES)
        self.repository = options.get("repository", "")
        self.fork_approval = bool(options.get("fork_approval"))
        config = options.get("pipeline_config")
        self.pull_requests = (
            PullRequests(master, config, tuple(options.get("merge_ref_waits", (1.0, 3.0)))) if config else None
        )
        self.pending: set[defer.Deferred[Any]] = set()  # work started after answering

    # --- the request ------------------------------------------------------------------------
    @defer.inlineCallbacks
    def getChanges(self, request: Any) -> Generator[Any, Any, tuple[list[dict[str, Any]], str]]:
        event = _header(request, b"X-GitHub-Event") or ""
        try:
            payload = yield self.payload(request)
            answer = yield self.answer(request, event, payload)
        except PayloadError as exc:
            log.msg(f"GitHub hook: refused {event or 'unnamed'} event: {exc}")
            raise
        except (KeyError, TypeError, AttributeError, IndexError, ValueError, OverflowError) as exc:
            log.msg(f"GitHub hook: refused {event or 'unnamed'} event: malformed payload ({type(exc).__name__})")
            raise PayloadError(f"malformed payload ({type(exc).__name__})") from None
        log.msg(f"GitHub hook: {answer}")
        setattr(request, ANSWER_ATTRIBUTE, answer + "\n")
        return [], "git"

    @defer.inlineCallbacks
    def payload(self, request: Any) -> Generator[Any, Any, dict[str, Any]]:
        declared = (_header(request, b"Content-Length") or "").strip()
        if declared.isdigit() and int(declared) > self.max_bytes:  # refused without reading it
            raise PayloadError(
                f"payload of {int(declared)} bytes is over {self.max_bytes} bytes ([github] max_payload_bytes)"
            )
        body = request.content.read(self.max_bytes + 1)
        if len(body) > self.max_bytes:
            raise PayloadError(f"payload over {self.max_bytes} bytes ([github] max_payload_bytes)")
        props = Properties()
        props.master = self.master
        secret = yield props.render(self.secret)
        if not secret:
            raise PayloadError("the webhook secret is not configured")
        verify_signature(secret, body, _header(request, b"X-Hub-Signature-256"), _header(request, b"X-Hub-Signature"))
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

    @defer.inlineCallbacks
    def answer(self, request: Any, event: str, payload: dict[str, Any]) -> Generator[Any, Any, str]:
        """What the body says; records the delivery, starts the work that follows."""
        if event not in ACCEPTED_EVENTS:
            return f"event {event[:40]!r} ignored (this hook uses {', '.join(ACCEPTED_EVENTS)})"
        if event == "ping":
            return f"pong: hook {payload.get('hook_id', '?')} is set up; pushes and pull requests are used"
        delivery = (_header(request, b"X-GitHub-Delivery") or "")[:100]
        log_ = deliveries.for_master(self.master)
        if delivery:
            first = yield log_.first_time(delivery)
            if not first:
                return f"delivery {delivery} was already processed: ignored"
        try:
            if event == "push":
                answer = self.handle_push(payload)
            else:
                answer = yield self.handle_pull_request(payload)
        except Exception:
            if delivery:
                log_.forget(delivery)
            raise
        if delivery:
            yield log_.save()  # before the answer: a crash right after it still knows this delivery
        return answer

    def after(self, work: defer.Deferred[Any]) -> None:
        """Keep `work` (started after answering) until it ends; log its failure."""
        self.pending.add(work)

        def done(result: Any) -> Any:
            self.pending.discard(work)
            return result

        def failed(failure: Failure) -> None:
            log.err(failure, "GitHub hook: work after answering failed")  # type: ignore[no-untyped-call]  # Twisted leaves log.err unannotated

        work.addBoth(done)
        work.addErrback(failed)

    def wrong_repository(self, payload: dict[str, Any]) -> str:
        name = payload["repository"]["full_name"]
        if self.repository and name.lower() != self.repository.lower():
            return f"repository {name} is not {self.repository} ([github] repository): ignored"
        return ""

    # --- push -------------------------------------------------------------------------------
    def git_pollers(self) -> list[GitPoller]:
        change_svc = getattr(self.master, "change_svc", None)
        return [source for source in (change_svc or []) if isinstance(source, GitPoller)]

    @staticmethod
    def polls(poller: GitPoller, branch: str) -> bool:
        branches = poller.branches
        if branches is True:
            return True
        if callable(branches):
            return bool(branches(f"refs/heads/{branch}"))
        return branch in (branches or []) or f"refs/heads/{branch}" in (branches or [])

    def handle_push(self, payload: dict[str, Any]) -> str:
        validate_push(payload)
        ref = payload["ref"]
        other = self.wrong_repository(payload)
        if other:
            return other
        if not ref.startswith("refs/heads/"):
            return f"push of {ref[:100]}: not a branch: ignored"
        branch = ref[len("refs/heads/") :]
        if payload.get("deleted"):
            return f"push deleting {branch}: nothing to build"
        head = payload["head_commit"]
        what = f"push {'creating' if payload.get('created') else 'to'} {branch} at {short(head['id'])}"
        pollers = [poller for poller in self.git_pollers() if self.polls(poller, branch)]
        if not pollers:
            return f"{what}: not a branch this master polls ([repo] branches): ignored"
        for poller in pollers:
            poller.force()
        if skips_ci(head["message"]):
            return f"{what}: [skip ci] in its head commit: no pipeline (polling now to record it)"
        return f"{what}: polling now"

    # --- pull_request -----------------------------------------------------------------------
    @defer.inlineCallbacks
    def handle_pull_request(self, payload: dict[str, Any]) -> Generator[Any, Any, str]:
        pr = PullRequest.from_payload(payload)
        other = self.wrong_repository(payload)
        if other:
            return other
        what = f"pull request #{pr.number} {pr.action}"
        if self.pull_requests is None:
            return f"{what}: this master does not build pull requests: ignored"
        if pr.action not in (*BUILT_ACTIONS, "closed"):
            return f"{what}: ignored (builds on {', '.join(BUILT_ACTIONS)}; closed cancels)"
        store = pending_events.store_for(self.master)
        key = yield store.add(pr)  # saved before answering: a crash loses no event (github/pending_events.py)
        self.after(pending_events.process(self.pull_requests, store, key, pr))
        if pr.action == "closed":
            return f"{what}: cancelling its builds"
        text = f"{what} at {short(pr.head_sha)} into {pr.base_ref}: fetching its merge result now"
        if pr.fork:
            then = "an admin approves it" if self.fork_approval else "it runs on isolated workers"
            text += f" (from the fork {pr.head_repo or '(deleted)'}: no secrets; runs once {then})"
        return text


class AdminBaseHookHandler(BaseHookHandler):
    """Buildbot's `base` hook, for requests with HTTP basic credentials of an admin."""

    def __init__(self, master: Any, options: dict[str, Any]) -> None:
        super().__init__(master, options)
        self.admins = set(options.get("admins", ()))
        self.checker = SecretHtpasswdChecker(master=master)

    @defer.inlineCallbacks
    def getChanges(self, request: Any) -> Generator[Any, Any, tuple[list[dict[str, Any]], str]]:
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
