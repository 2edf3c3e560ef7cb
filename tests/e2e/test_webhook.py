"""The change hooks of a real master whose poller would not poll again for an hour: a signed
GitHub push records the pushed commit at once and starts its pipeline; a bad or missing
signature, a garbage body or wrongly typed fields get a 4xx and record nothing (not even the
commit that is waiting in the repository); an event the hook does not use gets a 2xx "ignored"
and records nothing either. The `base` hook takes changes from admins only.
"""

from __future__ import annotations

import json
import time
import urllib.parse

import pytest

from harness import commit_file, make_service_repo, wait_for, wait_poller_ready
from www_support import (
    ADMIN_PASSWORD,
    ADMIN_USER,
    DEV_PASSWORD,
    DEV_USER,
    WEBHOOK_SECRET,
    Client,
    api,
    basic,
    default_secrets,
    deliver,
    push_payload,
    signature_headers,
    start_www_master,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("webhook")
    repo = make_service_repo(tmp / "repo")
    master = start_www_master(tmp, repo, default_secrets(), env={"PIPELINE_REPO_POLL_INTERVAL": "3600"})
    wait_poller_ready(master)
    yield master, repo
    master.stop()


def revisions(master) -> list[str]:
    return [change["revision"] for change in api(master, "changes")["changes"]]


def assert_nothing_recorded(master, before: list[str], sha: str) -> None:
    time.sleep(3)  # a poll the request might have triggered takes well under a second here
    assert revisions(master) == before
    assert sha not in revisions(master)


def refused(master, body: bytes, headers: dict) -> tuple[int, str]:
    status, text = deliver(master, body, headers)
    assert 400 <= status < 500, f"HTTP {status}: {text}"
    return status, text


def test_bad_deliveries_get_4xx_and_record_nothing(setup):
    master, repo = setup
    sha = commit_file(repo, "app/waiting.py", "x = 1\n", "a commit nobody announced yet")
    before = revisions(master)
    body = json.dumps(push_payload(sha)).encode()

    bad_signature = signature_headers("not-the-secret", body)
    assert "signature mismatch" in refused(master, body, bad_signature)[1]

    unsigned = {k: v for k, v in signature_headers(WEBHOOK_SECRET, body).items() if "Signature" not in k}
    assert "no signature" in refused(master, body, unsigned)[1]

    garbage = b"\x89PNG garbage {{{"
    refused(master, garbage, signature_headers(WEBHOOK_SECRET, garbage))
    refused(master, b"[]", signature_headers(WEBHOOK_SECRET, b"[]"))

    wrong_types = push_payload(sha)
    wrong_types["commits"][0]["timestamp"] = 1706702400
    wrong_types["ref"] = ["refs/heads/main"]
    typed_body = json.dumps(wrong_types).encode()
    status, text = refused(master, typed_body, signature_headers(WEBHOOK_SECRET, typed_body))
    assert status == 400 and "malformed payload" in text

    other_event = signature_headers(WEBHOOK_SECRET, body, event="issues")
    status, text = deliver(master, body, other_event)
    assert 200 <= status < 300 and "event 'issues' ignored" in text, f"HTTP {status}: {text}"

    status, _, _ = Client(master).request("GET", "change_hook/github")
    assert 400 <= status < 500
    assert_nothing_recorded(master, before, sha)


def test_a_signed_push_records_the_commit_and_starts_its_pipeline_at_once(setup):
    master, repo = setup
    sha = commit_file(repo, "app/pushed.py", "y = 2\n", "a pushed commit")
    body = json.dumps(push_payload(sha)).encode()
    status, text = deliver(master, body, signature_headers(WEBHOOK_SECRET, body))
    assert 200 <= status < 300, f"HTTP {status}: {text}"
    wait_for(f"a change for {sha[:8]}", lambda: sha in revisions(master), 30, interval=0.5)
    assert revisions(master).count(sha) == 1
    change = next(c for c in api(master, "changes")["changes"] if c["revision"] == sha)
    assert change["branch"] == "main"

    def pipeline_for_sha():
        for build in api(master, "builders/pipeline/builds", property="*")["builds"]:
            if (
                build["properties"].get("got_revision", [None])[0] == sha
                or build["properties"].get("revision", [None])[0] == sha
            ):
                return build
        return None

    wait_for(f"a pipeline build of {sha[:8]}", pipeline_for_sha, 60)


def base_hook(master, authorization: str | None, **fields) -> tuple[int, str]:
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    if authorization:
        headers["Authorization"] = authorization
    body = urllib.parse.urlencode(fields).encode()
    status, answer, _ = Client(master).request("POST", "change_hook/base", body=body, headers=headers)
    return status, answer.decode()


def test_the_base_hook_takes_changes_from_admins_only(setup):
    master, _ = setup
    before = revisions(master)
    fields = {
        "revision": "b" * 40,
        "branch": "feature/base-hook",
        "author": "x <x@example.com>",
        "comments": "via base",
        "project": "namaskah",
    }
    for authorization in (None, basic(DEV_USER, DEV_PASSWORD), basic(ADMIN_USER, "wrong")):
        status, text = base_hook(master, authorization, **fields)
        assert 400 <= status < 500, f"{authorization}: HTTP {status} {text}"
    assert revisions(master) == before
    status, text = base_hook(master, basic(ADMIN_USER, ADMIN_PASSWORD), **{**fields, "properties": "[1]"})
    assert status == 400, text
    status, text = base_hook(master, basic(ADMIN_USER, ADMIN_PASSWORD), **fields)
    assert 200 <= status < 300, f"HTTP {status}: {text}"
    wait_for("the admin's change", lambda: "b" * 40 in revisions(master), 20, interval=0.5)
