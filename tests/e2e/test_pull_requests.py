"""End to end: GitHub deliveries (the documented payload shapes, signed with X-Hub-Signature-256)
replayed against one real master (local mode, as root: jobs run as the job user) that polls a
scratch repository on every branch, with a stand-in for GitHub's API that takes 12 s per call and
the Render stand-in.

The scratch repository plays GitHub: a pull request is `refs/pull/<n>/head` and, unless it
conflicts, `refs/pull/<n>/merge` (the merge of head into base, made with `git merge-tree`). The
pipeline has two quick jobs: `check` (context `ci/check`) and `probe` (context `ci/probe`), which is
given the `codecov_token` job secret and looks for every secret it could reach: the variable, the
master's secret directory, the master's basedir.

In order: ping and an unused event; a push and a form-encoded push (built and deployed); a
redelivery; `[skip ci]`; a branch created at an existing commit; a pull request (merge result built,
statuses on its head, never deployed); the same tree as a branch push and a PR at once (jobs run
once); a conflicting PR; synchronize cancelling the older pipeline and close cancelling the newer;
a fork's PR (waits for an admin's approval, then runs without any secret); and a PR event answered
just before the master is killed, recorded after the restart (its redelivery still ignored).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets as pysecrets
import subprocess
import time
from pathlib import Path

import pytest

from deploy_story import Story, stand_in_secrets, stand_in_settings
from github_standin import GitHubStandin
from github_support import Hook, pull_request
from harness import ROOT, commit_file, git, running, start_master, wait_for
from render_standin import RenderStandin
from www_support import (
    ADMIN_USER,
    DEV_PASSWORD,
    DEV_USER,
    WEBHOOK_SECRET,
    Client,
    api,
    deliver,
    force,
    outside_urls_env,
    pull_request_payload,
    push_payload,
    signature_headers,
    write_secrets,
)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(1500),
    pytest.mark.skipif(os.geteuid() != 0, reason="a fork's jobs are isolated by the job user of a root master"),
]

JOB_SECRET = "cov-" + pysecrets.token_hex(12)
API_DELAY = 12.0
PIPELINE = """\
version: 1
python: "3.11"
requirements: []
jobs:
  check:
    context: ci/check
    steps:
      - cat marker.txt
      - {{name: wait, run: "sleep {sleep}"}}
  probe:
    context: ci/probe
    secrets: [codecov_token]
    steps:
      - name: token
        run: |
          if [ -n "${{CODECOV_TOKEN:-}}" ]; then echo TOKEN-SET; printf %s "$CODECOV_TOKEN" | sha256sum
          else echo TOKEN-UNSET; fi
      - {{name: secret files, run: "cat {secrets}/* 2>&1 || true"}}
      - {{name: master files, run: "ls {basedir} 2>&1 || true; head -c 200 {basedir}/twistd.log 2>&1 || true"}}
      - {{name: environment, run: "env | sort"}}
"""


class PullRequestStory(Story):
    """The deploy story, plus GitHub's stand-in and a webhook sender."""

    github: GitHubStandin
    hook: Hook
    tmp: Path
    pipeline: str
    secret_values: list[str]


@pytest.fixture(scope="module")
def story(tmp_path_factory):
    subprocess.run([str(ROOT / "scripts" / "create_job_user.sh"), "namaskah-job"], check=True, timeout=60)
    tmp = tmp_path_factory.mktemp("pull-requests")
    render = RenderStandin(build_seconds=0.3, update_seconds=0.2).start()
    github = GitHubStandin(delay_seconds=API_DELAY).start()
    secrets = {**stand_in_secrets(render), "codecov_token": JOB_SECRET}
    write_secrets(tmp / "secrets", secrets)
    repo = tmp / "repo"
    repo.mkdir()
    (repo / "marker.txt").write_text("marker 1\n")
    pipeline = PIPELINE.format(sleep=0, secrets=tmp / "secrets", basedir=tmp / "master")
    (repo / ".namaskah-ci.yml").write_text(pipeline)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "initial")
    env = {
        **outside_urls_env(),
        **stand_in_settings(render),
        "PIPELINE_GITHUB_API_URL": github.url,
        "PIPELINE_WWW_ADMINS": ADMIN_USER,
        "PIPELINE_CHECKS_REQUIRED": "check,probe",
        "PIPELINE_CHECKS_DISABLED": "",
        "PIPELINE_REPO_ALL_BRANCHES": "true",
        "PIPELINE_REPO_POLL_INTERVAL": "3600",
        "PIPELINE_REPO_TREE_STABLE_SECONDS": "0",
        "PIPELINE_PIPELINE_JOB_SECRETS": "codecov_token",
        "PIPELINE_GITHUB_MERGE_REF_WAIT_SECONDS": "2",
    }
    with running(lambda: start_master(tmp, repo, env=env, seed=False), render, github) as master:
        story = PullRequestStory(master, repo, render)
        story.github, story.hook, story.tmp, story.pipeline = github, Hook(master), tmp, pipeline
        story.secret_values = [value for value in secrets.values() if len(value) >= 8]
        yield story
    times = sorted(seconds for _, seconds in story.hook.times)
    if times:
        print(
            f"\nwebhook answers with a {API_DELAY:.0f} s GitHub API: {len(times)} deliveries, "
            f"median {times[len(times) // 2]:.3f} s, slowest {times[-1]:.3f} s"
        )


def pipelines(story: Story, **wanted) -> list[dict]:
    return [
        b
        for b in story.master.builds("pipeline")
        if all(story.prop(b, name) == value for name, value in wanted.items())
    ]


def wait_pipeline(story: Story, timeout: float = 240, **wanted) -> dict:
    def done():
        found = [b for b in pipelines(story, **wanted) if b["complete"]]
        return found[-1] if found else None

    return wait_for(f"a finished pipeline with {wanted}", done, timeout, 1)


def job_build(story: Story, builder: str, revision: str) -> dict:
    found = [b for b in story.master.finished_builds(builder) if story.prop(b, "namaskah_revision") == revision]
    assert found, f"no {builder} build of {revision[:8]}"
    return found[-1]


def changes(master, **wanted) -> list[dict]:
    return [c for c in api(master, "changes")["changes"] if all(c.get(k) == v for k, v in wanted.items())]


def test_ping_and_events_it_does_not_use_are_answered_2xx(story):
    answer, _, _ = story.hook.send(
        "ping",
        {
            "zen": "Keep it logically awesome.",
            "hook_id": 7,
            "hook": {"type": "Repository", "events": ["push", "pull_request"]},
        },
    )
    assert answer.startswith("pong: hook 7")
    answer, _, _ = story.hook.send("create", {"ref": "v1", "ref_type": "tag", "repository": {}})
    assert "ignored" in answer


def test_a_push_and_a_form_encoded_push_are_recorded_once_and_deploy(story):
    first = story.commit("push", "notes.txt", "one\n")
    answer, delivery, body = story.hook.send("push", push_payload(first))
    assert answer == f"push to main at {first[:7]}: polling now"
    wait_for("the push's change", lambda: changes(story.master, revision=first), 30, 0.5)
    second = story.commit("form", "notes.txt", "two\n")
    answer, _, _ = story.hook.send("push", push_payload(second), form=True)
    assert answer == f"push to main at {second[:7]}: polling now"
    pipeline = wait_pipeline(story, revision=second)
    assert pipeline["results"] == 0, story.step_states(pipeline)
    assert len(changes(story.master, revision=first)) == 1 and len(changes(story.master, revision=second)) == 1
    wait_for(
        "the deploy of the form-encoded push",
        lambda: any(story.prop(b, "revision") == second for b in story.deploys() if b["complete"]),
        180,
        1,
    )
    story.redelivery = (delivery, body)


def test_a_redelivery_is_ignored(story):
    before = len(api(story.master, "changes")["changes"])
    third = story.commit("redelivered", "notes.txt", "three\n")
    delivery, body = story.redelivery
    headers = {**signature_headers(WEBHOOK_SECRET, body), "X-GitHub-Delivery": delivery}
    status, answer = deliver(story.master, body, headers)
    assert 200 <= status < 300 and f"delivery {delivery} was already processed: ignored" in answer
    time.sleep(3)  # a poll it might have started would have recorded the commit by now
    assert len(api(story.master, "changes")["changes"]) == before and not changes(story.master, revision=third)
    big = push_payload(third)  # a new delivery of it is used, even at 6 MiB (GitHub sends up to 25 MB)
    big["head_commit"]["modified"] = big["commits"][0]["modified"] = [
        f"src/generated/module_{index:06d}.py" for index in range(110_000)
    ]
    assert len(json.dumps(big)) > 6 * 1024 * 1024
    answer, _, _ = story.hook.send("push", big)
    assert answer == f"push to main at {third[:7]}: polling now"
    wait_pipeline(story, revision=third)


def test_skip_ci_runs_no_pipeline_and_deploys_nothing(story):
    deploys = len(story.deploys())
    sha = commit_file(story.repo, "notes.txt", "four\n", "docs: notes [skip ci]")
    answer, _, _ = story.hook.send("push", push_payload(sha, message="docs: notes [skip ci]"))
    assert "[skip ci] in its head commit: no pipeline" in answer
    wait_for("the skipped commit's change", lambda: changes(story.master, revision=sha), 30, 0.5)
    time.sleep(4)  # the scheduler would have started its pipeline by now
    assert not pipelines(story, revision=sha) and len(story.deploys()) == deploys


def test_a_branch_created_at_an_existing_commit_builds_its_head_once(story):
    head = git(story.repo, "rev-parse", "main~1")  # main's head says [skip ci]: its parent, built before
    git(story.repo, "branch", "develop", head)
    payload = push_payload(head, branch="develop")
    payload.update(created=True, commits=[], before="0" * 40)
    answer, _, _ = story.hook.send("push", payload)
    assert answer == f"push creating develop at {head[:7]}: polling now"
    wait_pipeline(story, branch="develop", revision=head)
    time.sleep(3)
    assert len(changes(story.master, branch="develop")) == 1
    assert len(pipelines(story, branch="develop")) == 1


def test_a_pull_request_builds_its_merge_result_posts_statuses_to_its_head_and_never_deploys(story):
    deploys = len(story.deploys())
    head, merge = pull_request(story.repo, 1, "feature.txt", "feature\n")
    assert merge is not None  # no conflict: GitHub has a merge commit
    started = time.monotonic()
    answer, _, _ = story.hook.send("pull_request", pull_request_payload(1, head, action="opened", base_sha="1" * 40))
    assert answer.startswith(f"pull request #1 opened at {head[:7]} into main: fetching its merge result now")
    assert not [c for c in story.github.calls if c[0] >= started]  # answered without calling GitHub's API
    pipeline = wait_pipeline(story, revision=merge)
    assert pipeline["results"] == 0, story.step_states(pipeline)
    assert story.prop(pipeline, "branch") == "refs/pull/1/merge"
    assert (story.prop(pipeline, "pr_number"), story.prop(pipeline, "pr_head"), story.prop(pipeline, "pr_base")) == (
        1,
        head,
        "main",
    )
    assert "pull requests never deploy" in story.step_states(pipeline)["deploy gate"]
    probe = job_build(story, "probe", merge)
    assert hashlib.sha256(JOB_SECRET.encode()).hexdigest() in story.master.build_text(probe)  # trusted: given
    wait_for(
        "statuses on the PR head",
        lambda: story.github.statuses_for(head) == {"ci/check": "success", "ci/probe": "success"},
        120,
        1,
    )
    assert not story.github.statuses_for(merge)
    time.sleep(2)
    assert len(story.deploys()) == deploys


def job_runs(story: Story, builder: str, revisions: set[str]) -> list[dict]:
    """The builds of `builder` at `revisions` that ran the job (not a reuse of another build)."""
    return [
        b
        for b in story.master.finished_builds(builder)
        if story.prop(b, "namaskah_revision") in revisions and not story.prop(b, "namaskah_reused")
    ]


def test_the_same_tree_as_a_branch_push_and_a_pull_request_runs_its_jobs_once(story):
    head, merge = pull_request(story.repo, 2, "same.txt", "same tree\n", keep_branch=True)
    assert merge is not None  # no conflict: GitHub has a merge commit
    assert git(story.repo, "rev-parse", f"{head}^{{tree}}") == git(story.repo, "rev-parse", f"{merge}^{{tree}}")
    story.hook.send("push", push_payload(head, branch="pr-2"))
    story.hook.send("pull_request", pull_request_payload(2, head, action="opened", head_ref="pr-2"))
    for revision in (head, merge):
        assert wait_pipeline(story, revision=revision)["results"] == 0
    for builder in ("check", "probe"):
        runs = job_runs(story, builder, {head, merge})
        assert len(runs) == 1, [(b["number"], story.prop(b, "namaskah_revision")) for b in runs]


def test_a_conflicting_pull_request_ends_at_once_naming_its_base(story):
    head, merge = pull_request(story.repo, 3, "conflict.txt", "x\n", conflict=True)
    assert merge is None
    story.hook.send("pull_request", pull_request_payload(3, head, action="opened"))
    pipeline = wait_pipeline(story, pr_number=3)
    assert pipeline["results"] == 2 and "conflicts with main" in pipeline["state_string"]
    assert "refs/pull/3/merge" in story.step_states(pipeline)["pipeline file"]
    assert not [b for b in story.master.builds("check") if story.prop(b, "pr_number") == 3]


def test_a_newer_synchronize_cancels_the_older_pipeline_and_closing_cancels_the_rest(story):
    slow = PIPELINE.format(sleep=600, secrets=story.tmp / "secrets", basedir=story.tmp / "master")
    head, _ = pull_request(story.repo, 4, "slow.txt", "1\n", pipeline=slow)
    story.hook.send("pull_request", pull_request_payload(4, head, action="opened"))
    wait_for(
        "the first slow check running",
        lambda: [b for b in story.master.builds("check") if story.prop(b, "pr_head") == head and not b["complete"]],
        120,
        1,
    )
    git(story.repo, "update-ref", "-d", "refs/pull/4/merge")
    newer, _ = pull_request(story.repo, 4, "slow.txt", "2\n", pipeline=slow)
    story.hook.send("pull_request", pull_request_payload(4, newer, action="synchronize"))
    older = wait_pipeline(story, 120, pr_head=head)
    assert older["results"] == 6, story.step_states(older)  # CANCELLED
    wait_for(
        "the newer slow check running",
        lambda: [b for b in story.master.builds("check") if story.prop(b, "pr_head") == newer and not b["complete"]],
        120,
        1,
    )
    answer, _, _ = story.hook.send("pull_request", pull_request_payload(4, newer, action="closed"))
    assert answer == "pull request #4 closed: cancelling its builds"
    latest = wait_pipeline(story, 120, pr_head=newer)
    assert latest["results"] == 6, story.step_states(latest)
    for build in story.master.builds("check"):
        if story.prop(build, "pr_number") == 4:
            # cancelled, or its fetch of the merge ref failed first (the test moved the ref, as GitHub does)
            assert build["complete"] and build["results"] in (2, 6), build


def test_a_forks_pull_request_waits_for_approval_then_runs_without_any_secret(story):
    deploys = len(story.deploys())
    head, merge = pull_request(story.repo, 5, "fork.txt", "from a fork\n")
    assert merge is not None  # no conflict: GitHub has a merge commit
    answer, _, _ = story.hook.send(
        "pull_request", pull_request_payload(5, head, action="opened", head_repo="mallory/namaskah")
    )
    assert "from the fork mallory/namaskah: no secrets; runs once an admin approves it" in answer
    waiting = wait_pipeline(story, revision=merge)
    assert waiting["results"] == 1 and "waiting for an admin's approval" in waiting["state_string"]
    assert story.prop(waiting, "pr_fork") is True
    assert not [b for b in story.master.builds("probe") if story.prop(b, "pr_number") == 5]
    builderid = story.ids["pipeline"]
    status, _ = Client(story.master, DEV_USER, DEV_PASSWORD).rpc(
        "forceschedulers/approve_fork", "force", builderid=builderid, pr_number=5, reason="looks fine"
    )
    assert status == 403
    status, answer = story.admin.rpc(
        "forceschedulers/approve_fork", "force", builderid=builderid, pr_number=99, reason="no such PR"
    )
    assert status != 200 and "no pull request #99 has been recorded" in json.dumps(answer), answer
    force(story.admin, "pipeline", "approve_fork", pr_number=5, reason="reviewed")
    approved = wait_for(
        "the approved pipeline",
        lambda: [b for b in pipelines(story, revision=merge) if b["complete"] and story.prop(b, "pr_approved_by")],
        240,
        1,
    )[-1]
    assert approved["results"] == 0, story.step_states(approved)
    probe = job_build(story, "probe", merge)
    text = story.master.build_text(probe)
    lines = [line.strip() for line in text.splitlines()]
    assert "TOKEN-UNSET" in lines and "TOKEN-SET" not in lines
    assert "a pull request from a fork gets no secrets" in text
    assert text.count("No such file or directory") >= 2, text[-2000:]  # outside the job's sandbox
    for value in story.secret_values:
        assert value not in text and hashlib.sha256(value.encode()).hexdigest() not in text
    assert [s["name"] for s in story.master.steps(probe)].count("record for reuse") == 0
    wait_for(
        "statuses on the fork's head", lambda: story.github.statuses_for(head).get("ci/probe") == "success", 120, 1
    )
    assert len(story.deploys()) == deploys


def test_a_pull_request_answered_just_before_a_crash_is_recorded_after_the_restart(story):
    head, merge = pull_request(story.repo, 6, "crash.txt", "x\n", conflict=True)  # no merge ref: a 2 s wait
    assert merge is None
    _answer, delivery, body = story.hook.send("pull_request", pull_request_payload(6, head, action="opened"))
    story.master.kill()  # answered, still waiting for GitHub's merge ref
    story.master.launch()
    pipeline = wait_pipeline(story, pr_number=6)
    assert "conflicts with main" in pipeline["state_string"]
    assert len(changes(story.master, branch="refs/pull/6/merge")) == 1
    headers = {**signature_headers(WEBHOOK_SECRET, body, event="pull_request"), "X-GitHub-Delivery": delivery}
    status, text = deliver(story.master, body, headers)  # GitHub's redelivery after the restart
    assert 200 <= status < 300 and "already processed: ignored" in text, text
    time.sleep(4)  # a recording it might have started (merge ref waits: 2 s)
    assert len(changes(story.master, branch="refs/pull/6/merge")) == 1
