"""Bad input changes nothing, on one real master: force forms refuse bad revisions, branches and
reasons with a 400 naming the field (and queue nothing), while a well-formed revision or branch
the repository lacks reaches a build that fails saying so; REST calls on unknown ids answer 4xx;
a concurrent burst of good and bad webhook deliveries gets 2xx/4xx each and records exactly the
pushed commits; failed logins are limited per user and per client address (HTTP 429 until the
window passes). After each, the master still answers.
"""

from __future__ import annotations

import base64
import functools
import http.client
import json
import random
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any

import pytest

from harness import CHECK_BUILDERS, commit_file, make_service_repo, wait_for, wait_poller_ready
from namaskah_ci.text import short
from www_support import (
    ADMIN_PASSWORD,
    ADMIN_USER,
    DEV_PASSWORD,
    DEV_USER,
    WEBHOOK_SECRET,
    Client,
    api,
    builder_ids,
    default_secrets,
    deliver,
    force,
    force_answer,
    push_payload,
    signature_headers,
    start_www_master,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

SHELL = "; rm -rf / $(id) `x`"
HUGE = "a" * 10_000
UNKNOWN_SHA = "0123456789abcdef0123456789abcdef01234567"
BIG = "99999999999999999999999"
WINDOW = 8  # [www] login_window_seconds here, so the test can see the limit end
FAILURE = 2
BAD = {
    "revision": [HUGE, SHELL, "xyz1234", "abc12", "a" * 41, "HEAD~1"],
    "branch": [HUGE, SHELL, "a..b", "-x", "a b", "x\x00y", "b" * 201],
    "reason": [HUGE, "two\nlines", "r" * 501],
}
# builder → the fields its force form lets people type
FORMS = {
    "pipeline": ("reason", "branch", "revision"),
    "lint": ("reason", "branch", "revision"),
    "deploy-production": ("reason", "revision"),
    "rollback-production": ("reason",),
}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bad-input")
    repo = make_service_repo(tmp / "repo")
    env = {
        "PIPELINE_REPO_POLL_INTERVAL": "3600",  # only a verified push makes it poll
        "PIPELINE_CHECKS_DISABLED": ",".join(CHECK_BUILDERS),  # a pushed pipeline runs no jobs
        "PIPELINE_WWW_LOGIN_WINDOW_SECONDS": str(WINDOW),
    }
    master = start_www_master(tmp, repo, default_secrets(), env=env)
    try:
        wait_poller_ready(master)
        yield SimpleNamespace(master=master, repo=repo, admin=Client(master, ADMIN_USER, ADMIN_PASSWORD))
    finally:
        master.stop()


def counts(master) -> tuple[int, ...]:
    return tuple(len(api(master, kind)[kind]) for kind in ("buildsets", "buildrequests", "changes"))


def still_answers(master) -> None:
    assert master.process.poll() is None, "the master exited"
    assert api(master, "builders")["builders"]
    assert "while handling API request" not in master.twistd_log(), "a REST call failed with a 500"


def test_force_forms_refuse_bad_input_naming_the_field_and_queue_nothing(setup):
    master, admin = setup.master, setup.admin
    before = counts(master)
    for builder, fields in FORMS.items():
        for field in fields:
            cases = BAD[field] + ([""] if field == "reason" and builder.startswith(("deploy", "rollback")) else [])
            for bad in cases:
                params = {"reason": "bad input test", field: bad}
                status, answer = force_answer(admin, builder, **params)
                where = f"{builder} {field}={bad[:20]!r}"
                assert status == 400, f"{where}: HTTP {status} {str(answer)[:200]}"
                message = answer["error"]["message"]
                assert isinstance(message, dict) and field in message, f"{where}: {message}"
                assert field in message[field] or "Reason" in message[field], f"{where}: {message}"
                assert len(json.dumps(message)) < 400, f"{where}: the refusal echoes the whole value"
    assert counts(master) == before, "a refused force queued something"
    still_answers(master)


def first_step(master, build: dict) -> dict:
    # Buildbot's own steps first: the worker's preparation, and a job build's wait for a job slot
    return next(step for step in master.steps(build) if step["name"] not in ("worker_preparation", "locks_acquire"))


def test_unknown_revisions_and_branches_fail_the_first_step_saying_why(setup):
    master, admin = setup.master, setup.admin
    cases = [
        ("pipeline", {"revision": UNKNOWN_SHA}, f"revision {short(UNKNOWN_SHA)} is not in the repository"),
        ("pipeline", {"branch": "no-such-branch"}, "cannot fetch branch 'no-such-branch'"),
        ("lint", {"revision": UNKNOWN_SHA}, f"revision {short(UNKNOWN_SHA)} is not in the repository"),
        ("lint", {"branch": "no-such-branch"}, "cannot fetch branch 'no-such-branch'"),
    ]
    started = []
    for builder, params, expected in cases:
        started.append((force(admin, builder, reason="unknown ref test", **params), expected))

    def finished(brid: int):
        builds = api(master, "builds", buildrequestid=brid)["builds"]
        return builds[0] if builds and builds[0]["complete"] else None

    for brid, expected in started:
        build = wait_for(f"the build of request {brid}", functools.partial(finished, brid), 120, interval=0.5)
        step = first_step(master, build)
        assert build["results"] == FAILURE and step["results"] == FAILURE, (build, step)
        assert expected in step["state_string"], step["state_string"]
    still_answers(master)


def test_rest_calls_with_unknown_ids_answer_4xx(setup):
    master, admin = setup.master, setup.admin
    anonymous = Client(master)
    for path in (
        "builds/999999",
        f"builds/{BIG}",
        "builders/999999",
        f"builders/{BIG}",
        "builders/nosuch",
        "buildrequests/999999",
        f"buildrequests/{BIG}",
        "steps/999999",
        f"steps/{BIG}",
        "logs/999999",
        "logs/999999/raw",
        f"logs/{BIG}/raw",
        "logs/999999/contents",
        "forceschedulers/nosuch",
        "builders/lint/builds/99999",
        "builds/999999/steps/1/logs/stdio",
        "masters/1/schedulers/99999",
        "workers/999999",
        "changes/999999",
        f"builds?buildid={BIG}",
        f"builds?limit={BIG}",
    ):
        status, answer = anonymous.get(path)
        assert status in (400, 404), f"GET {path}: HTTP {status} {str(answer)[:200]}"
    for path in ("builders/999999/forceschedulers", "builds/999999/changes", "builds/999999/steps"):
        status, answer = anonymous.get(path)
        assert status == 200 and answer[path.rsplit("/", 1)[1]] == [], f"GET {path}: HTTP {status} {answer}"

    lint = builder_ids(master)["lint"]
    pipeline = builder_ids(master)["pipeline"]
    calls: list[tuple[str, str, dict[str, Any], int]] = [
        ("builds/999999", "stop", {}, 404),
        ("builds/999999", "rebuild", {}, 404),
        (f"builds/{BIG}", "stop", {}, 404),
        ("builders/lint/builds/99999", "stop", {}, 404),
        ("buildrequests/999999", "cancel", {}, 404),
        ("buildrequests/999999", "set_priority", {"priority": 1}, 404),
        ("buildrequests/999999", "bogus", {}, 400),
        ("workers/999999", "pause", {}, 404),
        ("schedulers/999999", "enable", {"enabled": False}, 404),
        ("builders/999999", "stop", {}, 400),
        ("builds/999999", "bogus", {}, 400),
        ("forceschedulers/nosuch", "force", {"builderid": lint}, 404),
        ("forceschedulers/force_lint", "force", {"builderid": 999999}, 400),
        ("forceschedulers/force_lint", "force", {"builderid": BIG}, 400),
        ("forceschedulers/force_lint", "force", {"builderid": "abc"}, 400),
        ("forceschedulers/force_lint", "force", {"builderid": pipeline}, 400),  # not this form's builder
        ("forceschedulers/force_lint", "force", {"builderNames": ["nosuch"]}, 400),
        ("forceschedulers/force_lint", "force", {"builderNames": 5}, 400),
        ("forceschedulers/force_lint", "force", {"builderid": lint, "priority": int(BIG)}, 400),
        ("forceschedulers/force_lint", "bogus", {}, 400),
    ]
    before = counts(master)
    for path, method, params, expected in calls:
        status, answer = admin.rpc(path, method, reason="unknown id test", **params)
        assert status == expected, f"admin {method} {path} {params}: HTTP {status} {str(answer)[:200]}"
        status, answer = anonymous.rpc(path, method, reason="unknown id test", **params)
        assert status == 403, f"anonymous {method} {path} {params}: HTTP {status} {str(answer)[:200]}"
    assert counts(master) == before
    still_answers(master)


def bad_deliveries(sha: str) -> list[tuple[bytes, dict]]:
    body = json.dumps(push_payload(sha)).encode()
    pull = json.dumps(
        {
            "number": 7,
            "action": "opened",
            "repository": push_payload(sha)["repository"],
            "pull_request": {
                "title": "t",
                "body": None,
                "created_at": "2026-01-31T12:00:00Z",
                "commits": 1,
                "head": {"sha": UNKNOWN_SHA},
                "base": {"ref": "main", "repo": {"full_name": "acme/namaskah"}},
                "_links": {"html": {"href": "https://github.com/acme/namaskah/pull/7"}},
            },
            "sender": {"login": "mallory"},
        }
    ).encode()
    wrong_types = push_payload(sha)
    wrong_types["commits"][0]["timestamp"] = 1706702400
    typed = json.dumps(wrong_types).encode()
    unsigned = {k: v for k, v in signature_headers(WEBHOOK_SECRET, body).items() if "Signature" not in k}
    malformed = dict(signature_headers(WEBHOOK_SECRET, body), **{"X-Hub-Signature-256": "sha256"})
    garbage = b"\x89PNG {{{" + bytes(range(256))
    deep, huge_number = b"[" * 100_000 + b"]" * 100_000, b'{"ref": ' + b"9" * 5000 + b"}"
    kinds = [
        (body, signature_headers("not-the-secret", body)),
        (body, unsigned),
        (body, malformed),
        (pull, signature_headers("not-the-secret", pull, event="pull_request")),
        (garbage, signature_headers(WEBHOOK_SECRET, garbage)),
        (b"[]", signature_headers(WEBHOOK_SECRET, b"[]")),
        (typed, signature_headers(WEBHOOK_SECRET, typed)),
        (body + b" ", signature_headers(WEBHOOK_SECRET, body)),  # the body changed after signing
        (b"x" * 100_000, signature_headers(WEBHOOK_SECRET, b"y")),
        (deep, signature_headers(WEBHOOK_SECRET, deep)),  # signed, but nested past Python's recursion limit
        (huge_number, signature_headers(WEBHOOK_SECRET, huge_number)),
    ]
    return [kinds[n % len(kinds)] for n in range(50)]


def test_a_burst_of_good_and_bad_webhook_deliveries(setup):
    master, repo = setup.master, setup.repo
    changes_before = [c["revision"] for c in api(master, "changes")["changes"]]
    pushed = [commit_file(repo, f"app/burst_{n}.py", f"n = {n}\n", f"burst commit {n}") for n in range(3)]
    body = json.dumps(push_payload(pushed[-1])).encode()
    good = [(body, signature_headers(WEBHOOK_SECRET, body)) for _ in range(50)]
    deliveries = [(True, d) for d in good] + [(False, d) for d in bad_deliveries(pushed[-1])]
    random.Random(7).shuffle(deliveries)

    def send(item):
        valid, (payload, headers) = item
        status, text = deliver(master, payload, headers)
        return valid, status, text

    with ThreadPoolExecutor(max_workers=25) as pool:
        answers = list(pool.map(send, deliveries, timeout=120))
    for valid, status, text in answers:
        if valid:
            assert 200 <= status < 300, f"a signed push: HTTP {status} {text[:200]}"
        else:
            assert 400 <= status < 500, f"a bad delivery: HTTP {status} {text[:200]}"
    assert len(answers) == 100
    still_answers(master)

    def recorded():
        revisions = [c["revision"] for c in api(master, "changes")["changes"]]
        return revisions if set(pushed) <= set(revisions) else None

    revisions = wait_for("the pushed commits as changes", recorded, 60, interval=0.5)
    assert revisions[: len(changes_before)] == changes_before
    assert sorted(revisions[len(changes_before) :]) == sorted(pushed), "exactly the pushed commits, once each"
    assert not [c for c in api(master, "changes")["changes"] if "refs/pull" in (c["branch"] or "")]
    still_answers(master)


def login(master, user: str, password: str, source: str) -> tuple[int, str, dict]:
    """GET /auth/login with HTTP basic credentials from the client address `source` (127.0.0.0/8)."""
    connection = http.client.HTTPConnection("127.0.0.1", master.www_port, timeout=30, source_address=(source, 0))
    try:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        connection.request("GET", "/auth/login", headers={"Authorization": f"Basic {token}"})
        response = connection.getresponse()
        return response.status, response.read().decode("utf-8", "replace"), dict(response.getheaders())
    finally:
        connection.close()


def test_failed_logins_are_limited_per_user_and_per_address(setup):
    master = setup.master
    wrong = [f"wrong-{n}-{DEV_PASSWORD[-4:]}" for n in range(5)]
    for password in wrong:
        assert login(master, DEV_USER, password, "127.0.0.2")[0] == 401
    status, text, headers = login(master, DEV_USER, DEV_PASSWORD, "127.0.0.2")
    assert status == 429 and "try again in" in text, (status, text)
    assert 1 <= int(headers["Retry-After"]) <= WINDOW
    assert login(master, DEV_USER, DEV_PASSWORD, "127.0.0.3")[0] == 429, "the user is limited from any address"
    assert login(master, ADMIN_USER, ADMIN_PASSWORD, "127.0.0.3")[0] < 400, "another user from another address logs in"
    assert login(master, ADMIN_USER, ADMIN_PASSWORD, "127.0.0.2")[0] == 429, "that success did not reset 127.0.0.2"
    # the admin-only base change hook shares the counters
    hook = Client(master)
    for n in range(6):
        token = base64.b64encode(f"mallory:guess-{n}".encode()).decode()
        status, answer, _ = hook.request(
            "POST",
            "change_hook/base",
            body=b"branch=main",
            headers={"Authorization": f"Basic {token}", "Content-Type": "application/x-www-form-urlencoded"},
        )
        assert status == 400, (status, answer)
    assert b"too many failed logins" in answer

    def logs_in_again() -> bool:
        return login(master, DEV_USER, DEV_PASSWORD, "127.0.0.2")[0] < 400

    wait_for("the window to pass", logs_in_again, WINDOW + 10, interval=0.5)
    text = master.twistd_log()
    assert "login failed for user 'dev' from 127.0.0.2" in text and "login refused for user 'dev'" in text
    for secret in (DEV_PASSWORD, ADMIN_PASSWORD, *wrong, "guess-0", "$2b$"):
        assert secret not in text, "a password or hash reached the master's log"
    still_answers(master)
