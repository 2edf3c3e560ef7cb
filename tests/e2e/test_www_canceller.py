"""Superseded builds against a real master, with the `lint` workers paused so a commit's
pipeline waits on its lint request: on a feature branch a newer commit cancels the older lint
request and the older pipeline; on `main` neither the older pipeline nor its lint is cancelled (it
may pass and deploy first): the newer pipeline runs beside it.
"""

from __future__ import annotations

import os
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
        slots = os.cpu_count() or 1  # one lint worker per job slot: local-lint, local-lint-s2, ...
        lint_workers = wait_for(
            f"the {slots} lint workers",
            lambda: (lambda found: found if len(found) == slots else None)(
                [w["workerid"] for w in api(master, "workers")["workers"] if w["name"].startswith("local-lint")]
            ),
            60,
        )
        yield master, repo, admin, lint_workers
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


def pause(admin, workers: list[int], action: str = "pause") -> None:
    for workerid in workers:
        assert admin.rpc(f"workers/{workerid}", action, reason="hold lint")[0] == 200


def two_commits(master, repo, admin, workers: list[int], branch: str) -> tuple[str, str]:
    """Commit A (its lint held back by the paused workers), then B on the same branch."""
    pause(admin, workers)
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
        pause(admin, workers, "unpause")
    return first, second


def test_a_newer_commit_on_a_feature_branch_cancels_the_older_pipeline(setup):
    master, repo, admin, workers = setup
    first, second = two_commits(master, repo, admin, workers, "feature/cancel")
    older = wait_for(
        "the older pipeline to end",
        lambda: (lambda b: b if b and b["complete"] else None)(pipeline_build(master, first)),
        120,
    )
    assert older["results"] == CANCELLED, older["state_string"]
    newer = wait_for(
        "the newer pipeline to end",
        lambda: (lambda b: b if b and b["complete"] else None)(pipeline_build(master, second)),
        300,
    )
    assert newer["results"] != CANCELLED


def test_on_main_the_older_pipeline_is_not_cancelled(setup):
    """Pipelines of main run side by side; the older one and its lint are never cancelled: it may
    pass and deploy first (the deploy gate never deploys backwards)."""
    master, repo, admin, workers = setup
    git(repo, "checkout", "-q", "main")
    pause(admin, workers)
    try:
        first = commit_file(repo, "app/main_a.py", "A = 1\n", "older", branch="main")
        wait_for(f"the pipeline of {first[:8]} to wait on lint", lambda: requests_for(master, "lint", first), 60)
        second = commit_file(repo, "app/main_b.py", "B = 1\n", "newer", branch="main")
        wait_for(f"the lint request of {second[:8]}", lambda: requests_for(master, "lint", second), 60)
        newer = pipeline_build(master, second)
        assert newer is not None and not newer["complete"], "the newer main pipeline did not start beside the older"
        time.sleep(3)
        older = pipeline_build(master, first)
        assert older is not None and not older["complete"], "the older main pipeline was cancelled"
        assert not any(r["complete"] for r in requests_for(master, "lint", first)), "the older lint was cancelled"
    finally:
        pause(admin, workers, "unpause")
    older = wait_for(
        "the older main pipeline to end",
        lambda: (lambda b: b if b and b["complete"] else None)(pipeline_build(master, first)),
        300,
    )
    assert older["results"] != CANCELLED, older["state_string"]
