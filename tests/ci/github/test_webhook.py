"""The GitHub hook's handler without a master: signatures (SHA-256, SHA-1 fallback, none),
payload validation (wrong types are 400s, never 500s), the answers it gives for each event
(ping, ignored events, pushes, pull requests, redeliveries, the payload limit), and the hook
dialects `www/config.py` configures."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
from typing import Any

import pytest
from buildbot.changes.gitpoller import GitPoller
from buildbot.test.fake.web import FakeRequest
from twisted.internet import defer
from twisted.python.failure import Failure

from namaskah_ci.fixes.change_hook_answer import ANSWER_ATTRIBUTE
from namaskah_ci.github import deliveries
from namaskah_ci.github.payloads import PayloadError, PullRequest, validate_push, verify_signature
from namaskah_ci.github.pull_requests import PullRequests, merge_ref_waits
from namaskah_ci.github.webhook import AdminBaseHookHandler, GitHubHook
from namaskah_ci.settings import load_settings
from namaskah_ci.triggers.changes import skips_ci
from namaskah_ci.www.config import make_change_hook_dialects
from www_support import pull_request_payload, push_payload

SECRET = "test-webhook-secret"
SHA = "3f786850e387550fdab836ed7e6dc881de23001b"


class FakePoller(GitPoller):
    def __init__(self, branches=("main", "develop")):
        self.name = "poller"
        self.branches = list(branches) if branches is not True else True
        self.forced = 0

    def force(self):
        self.forced += 1


class FakeState:
    def __init__(self):
        self.saved: dict = {}

    def getObjectId(self, name, class_name):
        return defer.succeed(1)

    def getState(self, objectid, key, default):
        return defer.succeed(self.saved.get(key, default))

    def setState(self, objectid, key, value):
        self.saved[key] = value
        return defer.succeed(None)


class FakeMaster:
    def __init__(self, pollers=None):
        self.change_svc = list(pollers if pollers is not None else [FakePoller()])
        self.db = type("Db", (), {})()
        self.db.state = FakeState()


class FakePullRequests(PullRequests):
    """record() and cancel(), all the hook calls, without a master or a repository."""

    def __init__(self):
        self.recorded: list = []
        self.cancelled: list = []

    finish = False  # False: still working after the answer

    def record(self, pr, replay=False):
        self.recorded.append((pr, replay) if self.finish else pr)
        return defer.succeed("recorded") if self.finish else defer.Deferred()

    def cancel(self, pr, reason):
        self.cancelled.append((pr, reason))
        return defer.succeed(0)


def handler(master=None, **options) -> GitHubHook:
    hook = GitHubHook(master or FakeMaster(), {"secret": SECRET, **options})
    return hook


def request(
    body: bytes,
    event: str = "push",
    sha256: str | None = "good",
    sha1: str | None = None,
    content_type: bytes = b"application/json",
    delivery: str | None = None,
) -> FakeRequest:
    req = FakeRequest(content=body)
    headers = {b"X-GitHub-Event": event.encode(), b"Content-Type": content_type}
    if sha256 == "good":
        sha256 = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    if sha1 == "good":
        sha1 = "sha1=" + hmac.new(SECRET.encode(), body, hashlib.sha1).hexdigest()
    if sha256:
        headers[b"X-Hub-Signature-256"] = sha256.encode()
    if sha1:
        headers[b"X-Hub-Signature"] = sha1.encode()
    if delivery:
        headers[b"X-GitHub-Delivery"] = delivery.encode()
    req.received_headers = headers
    return req


def outcome(d: defer.Deferred):
    """The result of an already-fired Deferred; raises its failure."""
    results: list = []
    d.addBoth(results.append)
    assert results, "the handler did not answer synchronously"
    if isinstance(results[0], Failure):
        results[0].raiseException()
    return results[0]


def answer(hook: GitHubHook, body: bytes, **kwargs) -> str:
    req = request(body, **kwargs)
    assert outcome(hook.getChanges(req)) == ([], "git")
    return getattr(req, ANSWER_ATTRIBUTE)


def process(body: bytes, **kwargs) -> str:
    return answer(handler(), body, **kwargs)


def test_a_signed_push_polls_now_and_says_so():
    poller = FakePoller()
    hook = handler(FakeMaster([poller]))
    text = answer(hook, json.dumps(push_payload(SHA)).encode())
    assert text == f"push to main at {SHA[:7]}: polling now\n"
    assert poller.forced == 1
    bad = json.dumps(broken("commits", "x")).encode()
    with pytest.raises(PayloadError):
        outcome(hook.getChanges(request(bad)))
    assert poller.forced == 1


def test_legacy_sha1_signature_is_accepted_when_sha256_is_absent():
    assert "polling now" in process(json.dumps(push_payload(SHA)).encode(), sha256=None, sha1="good")


def test_pushes_the_master_does_not_build_are_answered_truthfully():
    poller = FakePoller()
    hook = handler(FakeMaster([poller]), repository="acme/namaskah")
    feature = answer(hook, json.dumps(push_payload(SHA, branch="feature/x")).encode())
    assert "push to feature/x" in feature and "not a branch this master polls" in feature
    tag = push_payload(SHA)
    tag["ref"] = "refs/tags/v1"
    assert "not a branch: ignored" in answer(hook, json.dumps(tag).encode())
    deleted = push_payload(SHA)
    deleted.update(deleted=True, head_commit=None)
    assert answer(hook, json.dumps(deleted).encode()) == "push deleting main: nothing to build\n"
    other = push_payload(SHA)
    other["repository"]["full_name"] = "someone/else"
    assert "someone/else is not acme/namaskah" in answer(hook, json.dumps(other).encode())
    assert poller.forced == 0
    every = FakePoller(branches=True)
    assert "polling now" in answer(handler(FakeMaster([every])), json.dumps(push_payload(SHA, branch="x")).encode())


def test_skip_ci_and_branch_creation_are_named_in_the_answer():
    assert skips_ci("fix docs [skip ci]") and skips_ci("[CI SKIP] x") and not skips_ci("skip ci")
    skipped = process(json.dumps(push_payload(SHA, message="docs only [skip ci]")).encode())
    assert "[skip ci] in its head commit: no pipeline" in skipped
    created = push_payload(SHA, branch="develop")
    created.update(created=True, commits=[])
    assert process(json.dumps(created).encode()) == f"push creating develop at {SHA[:7]}: polling now\n"


def test_ping_and_events_it_does_not_use_are_answered_2xx():
    assert "pong" in process(b'{"zen": "hi", "hook_id": 42}', event="ping")
    for event in ("issues", "create", "workflow_run", "", "__init__"):
        assert "ignored" in process(json.dumps(push_payload(SHA)).encode(), event=event)


def test_a_redelivery_is_recognised_by_its_delivery_id_even_after_a_restart():
    master = FakeMaster()
    body = json.dumps(push_payload(SHA)).encode()
    first = handler(master)
    assert "polling now" in answer(first, body, delivery="d-1")
    assert "already processed: ignored" in answer(first, body, delivery="d-1")
    assert master.change_svc[0].forced == 1
    assert master.db.state.saved["recent"] == ["d-1"]
    restarted = FakeMaster()
    restarted.db.state = master.db.state
    assert "already processed" in answer(handler(restarted), body, delivery="d-1")
    assert "polling now" in answer(handler(restarted), body, delivery="d-2")
    with pytest.raises(PayloadError):  # a refused delivery is not remembered: it may come again
        answer(handler(restarted), json.dumps(broken("ref", 5)).encode(), delivery="d-3")
    assert "d-3" not in deliveries.for_master(restarted).ids


def test_a_delivery_is_answered_when_reading_the_delivery_ids_fails_at_once():
    # the state read failing synchronously (a database gone while the master stops) made first_time
    # fail with AttributeError ('NoneType' object has no attribute 'addBoth'): the good delivery was
    # refused as "malformed payload (AttributeError)"
    master = FakeMaster()
    reads = []

    def failing_once(name, class_name):
        reads.append(name)
        return defer.fail(RuntimeError("database is gone")) if len(reads) == 1 else defer.succeed(1)

    master.db.state.getObjectId = failing_once
    body = json.dumps(push_payload(SHA)).encode()
    hook = handler(master)
    assert "polling now" in answer(hook, body, delivery="d-1")
    assert "polling now" in answer(hook, body, delivery="d-2")  # the ids are read again
    assert len(reads) == 2 and master.db.state.saved["recent"] == ["d-1", "d-2"]


def test_the_payload_limit_is_a_setting():
    body = json.dumps(push_payload(SHA)).encode()
    with pytest.raises(PayloadError, match="max_payload_bytes"):
        answer(handler(max_payload_bytes=len(body) - 1), body)
    assert "polling now" in answer(handler(max_payload_bytes=len(body)), body)


def test_a_declared_body_over_the_limit_is_refused_without_reading_it():
    body = json.dumps(push_payload(SHA)).encode()
    req = request(body)
    req.received_headers[b"Content-Length"] = str(500 * 1024 * 1024).encode()
    with pytest.raises(PayloadError, match=r"of 524288000 bytes is over 1000 bytes \(\[github\] max_payload_bytes\)"):
        outcome(handler(max_payload_bytes=1000).getChanges(req))
    assert req.content.tell() == 0, "the body was read"


def test_pull_requests_are_recorded_after_answering_and_closing_cancels():
    hook = handler()
    prs = FakePullRequests()
    hook.pull_requests = prs
    opened = pull_request_payload(7, SHA, action="opened")
    text = answer(hook, json.dumps(opened).encode(), event="pull_request")
    assert text.startswith(f"pull request #7 opened at {SHA[:7]} into main: fetching its merge result now")
    assert [pr.number for pr in prs.recorded] == [7] and len(hook.pending) == 1  # still working
    fork = pull_request_payload(8, SHA, action="synchronize", head_repo="mallory/namaskah")
    assert "from the fork mallory/namaskah: no secrets" in answer(hook, json.dumps(fork).encode(), event="pull_request")
    assert prs.recorded[-1].fork and not prs.recorded[0].fork
    closed = pull_request_payload(7, SHA, action="closed")
    assert "cancelling its builds" in answer(hook, json.dumps(closed).encode(), event="pull_request")
    assert prs.cancelled[0][0].number == 7
    labeled = pull_request_payload(7, SHA, action="labeled")
    assert "labeled: ignored" in answer(hook, json.dumps(labeled).encode(), event="pull_request")
    assert len(prs.recorded) == 2
    assert "does not build pull requests" in answer(handler(), json.dumps(opened).encode(), event="pull_request")


def test_a_pull_request_event_is_saved_before_the_answer_and_forgotten_once_done():
    from namaskah_ci.github import pending_events

    master = FakeMaster()
    hook = handler(master)
    prs = FakePullRequests()
    hook.pull_requests = prs
    answer(hook, json.dumps(pull_request_payload(7, SHA, action="opened")).encode(), event="pull_request")
    (saved,) = master.db.state.saved["pending"].values()  # still being recorded: saved
    assert saved["number"] == 7 and saved["head_sha"] == SHA
    answer(hook, json.dumps(pull_request_payload(7, SHA, action="closed")).encode(), event="pull_request")
    assert len(master.db.state.saved["pending"]) == 1  # the close is done: only the open stays
    prs.recorded.clear()
    prs.finish = True
    restarted = FakeMaster()
    restarted.db.state = master.db.state
    outcome(pending_events.replay(restarted, prs))  # what a restarted master does at its start
    assert [(pr.number, replay) for pr, replay in prs.recorded] == [(7, True)]
    assert master.db.state.saved["pending"] == {}


@pytest.mark.parametrize(
    "path, value",
    [
        ("number", "7"),
        ("number", 0),
        ("pull_request.head.sha", 5),
        ("pull_request.head.repo", "x"),
        ("pull_request.base.ref", None),
    ],
)
def test_pull_requests_with_wrong_field_types_are_refused(path, value):
    payload = pull_request_payload(7, SHA)
    target = payload
    *parents, last = path.split(".")
    for key in parents:
        target = target[key]
    target[last] = value
    with pytest.raises(PayloadError, match="malformed payload"):
        PullRequest.from_payload(payload)


def test_a_deleted_fork_is_a_fork():
    payload = pull_request_payload(9, SHA)
    payload["pull_request"]["head"]["repo"] = None
    pr = PullRequest.from_payload(payload)
    assert pr.fork and pr.head_repo == "" and pr.merge_ref == "refs/pull/9/merge"


@pytest.mark.parametrize(
    "sha256, sha1, message",
    [
        (None, None, "no signature"),
        ("sha256=" + "0" * 64, None, "signature mismatch"),
        ("sha256=" + "0" * 64, "good", "signature mismatch"),  # a good SHA-1 does not rescue a bad SHA-256
        ("sha1=abc", None, "malformed"),
        ("sha256", None, "malformed"),
    ],
)
def test_bad_or_missing_signatures_are_refused(sha256, sha1, message):
    with pytest.raises(PayloadError, match=message):
        process(json.dumps(push_payload(SHA)).encode(), sha256=sha256, sha1=sha1)


@pytest.mark.parametrize(
    "body, message",
    [
        (b"\x00garbage{", "not JSON"),
        (b"[1, 2]", "JSON object"),
        (b"", "not JSON"),
    ],
)
def test_garbage_bodies_are_refused_even_when_signed(body, message):
    with pytest.raises(PayloadError, match=message):
        process(body)


def broken(path: str, value):
    payload = push_payload(SHA)
    target: Any = payload
    *parents, last = path.split(".")
    for part in parents:
        target = target[int(part)] if isinstance(target, list) else target[part]
    key: int | str = int(last) if isinstance(target, list) else last
    if value is KeyError:
        del target[key]
    else:
        target[key] = value
    return payload


@pytest.mark.parametrize(
    "path, value",
    [
        ("ref", 5),
        ("ref", KeyError),
        ("repository", "acme/namaskah"),
        ("repository.html_url", None),
        ("commits", "not a list"),
        ("commits.0", 7),
        ("commits.0.id", 1234),
        ("commits.0.timestamp", 12),
        ("commits.0.timestamp", "not a date"),
        ("commits.0.author", "Dev <dev@example.com>"),
        ("commits.0.added", "app/new.py"),
        ("commits.0.added", [1]),
        ("head_commit", None),
        ("head_commit.message", ["x"]),
        ("deleted", "no"),
    ],
)
def test_signed_pushes_with_wrong_field_types_are_refused(path, value):
    payload = broken(path, value)
    with pytest.raises(PayloadError, match="malformed payload"):
        validate_push(payload)
    with pytest.raises(PayloadError, match="malformed payload"):
        process(json.dumps(payload).encode())


def test_unexpected_errors_in_a_handler_become_payload_errors(monkeypatch):
    def explode(self, payload):
        raise TypeError("'int' object is not subscriptable")

    monkeypatch.setattr(GitHubHook, "handle_push", explode)
    with pytest.raises(PayloadError, match="malformed payload"):
        process(json.dumps(push_payload(SHA)).encode())


def test_verify_signature_is_exact():
    body = b'{"a": 1}'
    good = "sha256=" + hmac.new(b"k", body, hashlib.sha256).hexdigest()
    verify_signature("k", body, good, None)
    verify_signature("k", body, good.upper().replace("SHA256", "sha256"), None)
    with pytest.raises(PayloadError):
        verify_signature("k", body + b" ", good, None)
    with pytest.raises(PayloadError):
        verify_signature("other", body, good, None)


def test_the_github_dialect_exists_only_with_its_secret(tmp_path):
    settings = load_settings({"PIPELINE_MASTER_BASEDIR": str(tmp_path)})
    without = make_change_hook_dialects(settings, lambda name: False)
    assert set(without) == {"base"}
    assert without["base"]["custom_class"] is AdminBaseHookHandler
    with_secret = make_change_hook_dialects(settings, lambda name: name == "webhook_secret")
    github = with_secret["github"]
    assert github["custom_class"] is GitHubHook and github["max_payload_bytes"] == 25 * 1024 * 1024
    assert repr(github["secret"]) == repr(copy.copy(github["secret"]))  # a util.Secret, not a value
    assert type(github["secret"]).__name__ == "Secret" and "token" not in github
    assert github["fork_approval"] is True  # local mode
    assert merge_ref_waits(6) == (1.0, 2.0, 3.0) and merge_ref_waits(0) == ()
