"""The GitHub hook's handler without a master: signatures (SHA-256, SHA-1 fallback, none),
payload validation (wrong types are 400s, never 500s), accepted events, and the hook dialects
`www.py` configures."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json

import pytest
from buildbot.test.fake.web import FakeRequest
from twisted.internet import defer
from twisted.python.failure import Failure

from namaskah_ci.settings import load_settings
from namaskah_ci.webhook import (
    AdminBaseHookHandler,
    PayloadError,
    StrictGitHubEventHandler,
    validate_push,
    verify_signature,
)
from namaskah_ci.www import make_change_hook_dialects
from www_support import push_payload

SECRET = "test-webhook-secret"
SHA = "3f786850e387550fdab836ed7e6dc881de23001b"


class NoPollers:
    change_svc: list = []


def handler() -> StrictGitHubEventHandler:
    return StrictGitHubEventHandler(SECRET, True, master=NoPollers())


def request(body: bytes, event: str = "push", sha256: str | None = "good", sha1: str | None = None,
            content_type: bytes = b"application/json") -> FakeRequest:
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


def process(body: bytes, **kwargs):
    return outcome(handler().process(request(body, **kwargs)))


def test_a_signed_push_becomes_changes_when_no_poller_is_configured():
    changes, vcs = process(json.dumps(push_payload(SHA)).encode())
    assert vcs == "git"
    assert [(c["revision"], c["branch"], c["repository"]) for c in changes] == [
        (SHA, "main", "https://github.com/acme/namaskah")
    ]


def test_legacy_sha1_signature_is_accepted_when_sha256_is_absent():
    changes, _ = process(json.dumps(push_payload(SHA)).encode(), sha256=None, sha1="good")
    assert len(changes) == 1


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
    target = payload
    *parents, last = path.split(".")
    for key in parents:
        target = target[int(key)] if isinstance(target, list) else target[key]
    key = int(last) if isinstance(target, list) else last
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


def test_unexpected_errors_in_the_stock_handler_become_payload_errors(monkeypatch):
    def explode(self, payload, event):
        raise TypeError("'int' object is not subscriptable")

    monkeypatch.setattr(StrictGitHubEventHandler, "handle_push", explode)
    with pytest.raises(PayloadError, match="malformed payload"):
        process(json.dumps(push_payload(SHA)).encode())


@pytest.mark.parametrize("event", ["issues", "workflow_run", "", "__init__"])
def test_only_ping_push_and_pull_request_events_are_handled(event):
    with pytest.raises(PayloadError, match="not handled"):
        process(json.dumps(push_payload(SHA)).encode(), event=event)
    assert process(b'{"zen": "hi"}', event="ping") == ([], "git")


def test_a_push_polls_the_git_pollers_instead_of_trusting_the_payload():
    from buildbot.changes.gitpoller import GitPoller

    class FakePoller(GitPoller):
        def __init__(self):
            self.name = "poller"
            self.forced = 0

        def force(self):
            self.forced += 1

    poller = FakePoller()

    class Master:
        change_svc = [poller]

    hook = StrictGitHubEventHandler(SECRET, True, master=Master())
    body = json.dumps(push_payload(SHA)).encode()
    assert outcome(hook.process(request(body))) == ([], "git")
    assert poller.forced == 1
    bad = json.dumps(broken("commits", "x")).encode()
    with pytest.raises(PayloadError):
        outcome(hook.process(request(bad)))
    assert poller.forced == 1


def test_verify_signature_is_exact():
    body = b'{"a": 1}'
    good = "sha256=" + hmac.new(b"k", body, hashlib.sha256).hexdigest()
    verify_signature("k", body, good, None)
    verify_signature("k", body, good.upper().replace("SHA256", "sha256"), None)
    with pytest.raises(PayloadError):
        verify_signature("k", body + b" ", good, None)
    with pytest.raises(PayloadError):
        verify_signature("other", body, good, None)


def test_the_github_dialect_exists_only_with_its_secret_and_is_strict(tmp_path):
    settings = load_settings({"PIPELINE_MASTER_BASEDIR": str(tmp_path)})
    without = make_change_hook_dialects(settings, lambda name: False)
    assert set(without) == {"base"}
    assert without["base"]["custom_class"] is AdminBaseHookHandler
    with_secret = make_change_hook_dialects(settings, lambda name: name == "webhook_secret")
    github = with_secret["github"]
    assert github["strict"] is True and github["class"] is StrictGitHubEventHandler
    assert repr(github["secret"]) == repr(copy.copy(github["secret"]))  # a util.Secret, not a value
    assert type(github["secret"]).__name__ == "Secret" and "token" not in github
