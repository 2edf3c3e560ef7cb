"""Superseded builds against a real master, with the `lint` worker paused so a commit's
pipeline waits on its lint request: on a feature branch a newer commit cancels the older lint
request and the older pipeline; on `main` the older pipeline is never cancelled (it may be
deploying) and the newer one waits for it.
"""

from __future__ import annotations

import time

import pytest

from harness import commit_file, git, make_service_repo, wait_for, wait_poller_ready
from www_support import ADMIN_PASSWORD, ADMIN_USER, Client, api, builder_ids, default_secrets, start_www_master

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

CANCELLED = 6


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("canceller")
    repo = make_service_repo(tmp / "repo")
    master = start_www_master(tmp, repo, default_secrets())
    try:
        wait_poller_ready(master)
        admin = Client(master, ADMIN_USER, ADMIN_PASSWORD)
        [worker] = wait_for(
            "the lint worker", lambda: [w for w in api(master, "workers")["workers"] if w["name"] == "local-lint"], 60
        )
        yield master, repo, admin, worker["workerid"]
    finally:
        master.stop()


def requests_for(master, builder: str, sha: str) -> list[dict]:
    """Build requests of `builder` whose buildset is for revision `sha`."""
    found = []
    for request in api(master, "buildrequests", builderid=builder_ids(master)[builder])["buildrequests"]:
        buildset = api(master, f"buildsets/{request['buildsetid']}")["buildsets"][0]
        if any(ss["revision"] == sha for ss in buildset["sourcestamps"]):
            found.append(request)
    return found


def pipeline_build(master, sha: str) -> dict | None:
    for request in requests_for(master, "pipeline", sha):
        builds = api(master, "builds", buildrequestid=request["buildrequestid"])["builds"]
        if builds:
            return builds[0]
    return None


def two_commits(master, repo, admin, workerid: int, branch: str) -> tuple[str, str]:
    """Commit A (its lint held back by the paused worker), then B on the same branch."""
    assert admin.rpc(f"workers/{workerid}", "pause", reason="hold lint")[0] == 200
    try:
        first = commit_file(repo, f"app/{branch.replace('/', '_')}_a.py", "A = 1\n", "older", branch=branch)
        wait_for(f"the pipeline of {first[:8]} to wait on lint", lambda: requests_for(master, "lint", first), 60)
        second = commit_file(repo, f"app/{branch.replace('/', '_')}_b.py", "B = 1\n", "newer", branch=branch)
        wait_for(f"the pipeline of {second[:8]}", lambda: requests_for(master, "lint", second), 60)
        [older_lint] = wait_for(
            "the older lint request to be cancelled",
            lambda: [r for r in requests_for(master, "lint", first) if r["complete"]],
            60,
        )
        assert older_lint["results"] == CANCELLED
        assert api(master, "builds", buildrequestid=older_lint["buildrequestid"])["builds"] == []
        newer_lint = requests_for(master, "lint", second)
        assert not any(r["complete"] for r in newer_lint), "the newer commit's lint was cancelled"
    finally:
        admin.rpc(f"workers/{workerid}", "unpause", reason="done")
    return first, second


def test_a_newer_commit_on_a_feature_branch_cancels_the_older_pipeline(setup):
    master, repo, admin, workerid = setup
    first, second = two_commits(master, repo, admin, workerid, "feature/cancel")
    older = wait_for("the older pipeline to end", lambda: (lambda b: b if b and b["complete"] else None)(
        pipeline_build(master, first)), 120)
    assert older["results"] == CANCELLED, older["state_string"]
    newer = wait_for("the newer pipeline to end", lambda: (lambda b: b if b and b["complete"] else None)(
        pipeline_build(master, second)), 300)
    assert newer["results"] != CANCELLED


def test_on_main_the_older_pipeline_is_not_cancelled(setup):
    """The pipeline builder runs one build at a time, so a newer main pipeline waits for the older
    one, which is never cancelled: it may already be deploying."""
    master, repo, admin, workerid = setup
    git(repo, "checkout", "-q", "main")
    assert admin.rpc(f"workers/{workerid}", "pause", reason="hold lint")[0] == 200
    try:
        first = commit_file(repo, "app/main_a.py", "A = 1\n", "older", branch="main")
        wait_for(f"the pipeline of {first[:8]} to wait on lint", lambda: requests_for(master, "lint", first), 60)
        second = commit_file(repo, "app/main_b.py", "B = 1\n", "newer", branch="main")
        wait_for(f"the pipeline request of {second[:8]}", lambda: requests_for(master, "pipeline", second), 60)
        time.sleep(3)
        older = pipeline_build(master, first)
        assert older is not None and not older["complete"], "the older main pipeline was cancelled"
    finally:
        admin.rpc(f"workers/{workerid}", "unpause", reason="done")
    older = wait_for("the older main pipeline to end", lambda: (lambda b: b if b and b["complete"] else None)(
        pipeline_build(master, first)), 300)
    assert older["results"] != CANCELLED, older["state_string"]
