"""Crash safety: a master killed (SIGKILL, with its whole process group) at chosen moments, then started
again as `make up` would, loses no pipeline and never deploys twice or backwards.

One master per database (SQLite, and a real PostgreSQL 15 started here, as docker-compose runs it),
the Render and service stand-ins, the `lint`-only pipeline of the deploy story. Trials, in order, each
on a new commit on `main`: kill while the checks run; right after the deploy gate decided; right after
Render answered the deploy call; while waiting for the deploy to go live; during the health checks;
during an automatic rollback; then two pushes a second apart against a slow Render. After every trial:
every pipeline and deploy build of the revision completed (none left RETRY or running), at most one
Render deploy per revision, production runs the newest good revision, and nothing of the killed master
survives. `TRIALS` collects what happened for docs/reliability.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from deploy_story import Story, make_repo, stand_in_secrets, stand_in_settings
from harness import ROOT, wait_for, wait_poller_ready
from render_standin import RenderStandin
from www_support import start_www_master

pytestmark = [pytest.mark.e2e, pytest.mark.reliability, pytest.mark.timeout(2400)]
RETRY = 5  # buildbot.process.results.RETRY: a build the restarted master runs again
SUCCESS, SKIPPED = 0, 3  # buildbot.process.results
TIMEOUT = 300
TRIALS: list[dict] = []
HELPERS = ROOT / "master" / "namaskah_ci" / "helpers"


def start_postgres(state: Path) -> str:
    done = subprocess.run(
        [
            sys.executable,
            str(HELPERS / "ci_services.py"),
            "start",
            "--state-dir",
            str(state),
            "--postgres",
            "--timeout",
            "60",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return next(line.split("=", 1)[1] for line in done.stdout.splitlines() if line.startswith("DATABASE_URL="))


class CrashStory(Story):
    database: str  # "sqlite" or "postgresql"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def crash_story(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(f"reliability-{request.param}")
    db_url = None
    if request.param == "postgresql":
        db_url = start_postgres(tmp / "db")
    render = RenderStandin(build_seconds=1.0, update_seconds=0.5).start()
    settings = {**stand_in_settings(render), "PIPELINE_DEPLOY_PRODUCTION_HEALTH_RETRIES": "5"}
    repo = make_repo(tmp / "repo")
    master = start_www_master(tmp, repo, stand_in_secrets(render), env=settings, db_url=db_url)
    try:
        wait_poller_ready(master)
        story = CrashStory(master, repo, render)
        story.database = request.param
        yield story
    finally:
        try:
            write_trials(request.param)
            master.stop()
        finally:
            render.stop()
            if db_url:
                subprocess.run(
                    [sys.executable, str(HELPERS / "ci_services.py"), "stop", "--state-dir", str(tmp / "db")],
                    capture_output=True,
                    timeout=120,
                    check=False,
                )


def write_trials(database: str) -> None:
    """What the trials saw, as JSON beside the test artifacts (docs/reliability.md shows the table)."""
    out = ROOT / "test-artifacts" / f"reliability-{database}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps([t for t in TRIALS if t["database"] == database], indent=1) + "\n")


def of_revision(story, builder: str, revision: str) -> list[dict]:
    """The builds of `builder` for `revision`, oldest first (the REST API's order is the database's:
    PostgreSQL returns an updated row, e.g. a build the restart marked RETRY, last)."""
    found = [
        b
        for b in story.master.builds(builder)
        if story.prop(b, "revision") == revision or story.prop(b, "deploy_revision") == revision
    ]
    return sorted(found, key=lambda b: b["number"])


def running_build(story, builder: str, revision: str, step: str | None = None) -> bool:
    for build in of_revision(story, builder, revision):
        if build["complete"]:
            continue
        if step is None:
            return True
        return any(s["name"] == step and s["started_at"] and not s["complete"] for s in story.master.steps(build))
    return False


def step_done(story, builder: str, revision: str, step: str) -> bool:
    return any(
        s["name"] == step and s["complete"]
        for b in of_revision(story, builder, revision)
        for s in story.master.steps(b)
    )


def crash(story, revision: str) -> float:
    """SIGKILL the master's process group, start it again; seconds the restart took."""
    group = story.master.process.pid
    story.master.kill()
    started = time.monotonic()
    story.master.launch()
    with pytest.raises(ProcessLookupError):
        os.killpg(group, 0)  # nothing of the killed master survives
    return time.monotonic() - started


def settled(story, revision: str) -> tuple[dict, dict]:
    """The final pipeline and deploy builds of a revision, once nothing of it runs or waits."""

    def final(builder):
        builds = [b for b in of_revision(story, builder, revision) if b["complete"] and b["results"] != RETRY]
        busy = [b for b in of_revision(story, builder, revision) if not b["complete"]]
        return builds[-1] if builds and not busy else None

    pipeline = wait_for(f"the pipeline of {revision[:7]} to complete", lambda: final("pipeline"), TIMEOUT, 1)
    deploy = wait_for(f"the deploy of {revision[:7]} to complete", lambda: final("deploy-production"), TIMEOUT, 1)
    story.master.wait_idle(TIMEOUT, 1)
    return pipeline, deploy


def check_invariants(story, live: str) -> None:
    history = story.render.deploy_history()
    per_commit: dict[str, int] = {}
    for deploy in history:
        if deploy["trigger"] != "rollback":
            per_commit[deploy["commit"]["id"]] = per_commit.get(deploy["commit"]["id"], 0) + 1
    assert all(count == 1 for count in per_commit.values()), per_commit
    assert story.render.service.commit == live, (story.render.service.commit, live)
    pending = story.master.api("buildrequests", complete="false")["buildrequests"]
    assert not pending, pending


def trial(story, moment: str, kill_when, revision: str, expect_live: str, after_kill=None) -> dict:
    wait_for(f"the moment to kill: {moment}", kill_when, TIMEOUT, 0.05)
    restart_s = crash(story, revision)
    if after_kill:
        after_kill()
    t0 = time.monotonic()
    pipeline, deploy = settled(story, revision)
    check_invariants(story, expect_live)
    record = {
        "database": story.database,
        "moment": moment,
        "revision": revision[:7],
        "pipeline": pipeline["results"],
        "deploy": deploy["results"],
        "deploy_summary": deploy["state_string"],
        "restart_s": round(restart_s, 1),
        "restart_to_deploy_done_s": round(time.monotonic() - t0, 1),
        "render_deploys_of_revision": len(story.render.deploys_of(revision)),
    }
    TRIALS.append(record)
    return record


def test_killed_while_the_checks_run(crash_story):
    story = crash_story
    rev = story.commit("checks", "app/notes.md", "killed while the checks run\n")
    record = trial(story, "while checks run", lambda: running_build(story, "lint", rev, "black"), rev, rev)
    assert record["pipeline"] == 0 and record["deploy"] == 0, record


def test_killed_right_after_the_gate_decided(crash_story):
    story = crash_story
    rev = story.commit("gate", "app/notes.md", "killed after the gate\n")
    record = trial(story, "after the gate decided", lambda: step_done(story, "pipeline", rev, "deploy gate"), rev, rev)
    assert record["render_deploys_of_revision"] == 1, record
    # The kill lands when the test notices the gate's end, through REST calls: on a loaded machine that can
    # be before the deploy build started and the pipeline build ended. The pipeline then runs again and
    # asks for the deploy once more, beside the request made before the kill: whichever of the two deploy
    # builds runs second is skipped as already deployed. Either way one successful deploy build, once.
    results = sorted(b["results"] for b in of_revision(story, "deploy-production", rev) if b["results"] != RETRY)
    assert results in ([SUCCESS], [SUCCESS, SKIPPED]), (results, record)


def test_killed_right_after_render_answered_the_deploy_call(crash_story):
    story = crash_story
    answered = threading.Event()
    story.render.on_deploy = lambda deploy: answered.set()
    try:
        rev = story.commit("answered", "app/notes.md", "killed after Render answered\n")
        record = trial(story, "right after the deploy call was answered", answered.is_set, rev, rev)
    finally:
        story.render.on_deploy = None
    assert record["deploy"] == 0 and record["render_deploys_of_revision"] == 1, record
    assert "resuming" in json.dumps(
        [s["state_string"] for s in story.master.steps(of_revision(story, "deploy-production", rev)[-1])]
    ), "the retried deploy took Render's deploy over"


def test_killed_while_waiting_for_live(crash_story):
    story = crash_story
    story.render.build_seconds = 8.0
    try:
        rev = story.commit("live", "app/notes.md", "killed while waiting for live\n")
        record = trial(
            story,
            "while waiting for live",
            lambda: running_build(story, "deploy-production", rev, "wait until live"),
            rev,
            rev,
        )
    finally:
        story.render.build_seconds = 1.0
    assert record["deploy"] == 0 and record["render_deploys_of_revision"] == 1, record


def test_killed_during_the_health_checks(crash_story):
    story = crash_story
    story.render.service.down = True  # the first checks fail (and are retried): the kill lands among them

    def healthy_again():
        story.render.service.down = False

    rev = story.commit("health", "app/notes.md", "killed during the health checks\n")
    record = trial(
        story,
        "during health checks",
        lambda: running_build(story, "deploy-production", rev, "health check"),
        rev,
        rev,
        healthy_again,
    )
    assert record["deploy"] == 0 and record["render_deploys_of_revision"] == 1, record


def test_killed_during_an_automatic_rollback(crash_story):
    story = crash_story
    good = story.render.service.commit
    rolling = threading.Event()

    def on_deploy(deploy):
        if deploy["trigger"] == "rollback":
            rolling.set()

    story.render.on_deploy = on_deploy
    rev = story.commit("rollback", "app/notes.md", "unhealthy: rolled back, killed meanwhile\n")
    story.render.service.unhealthy_revisions.add(rev)
    try:
        record = trial(story, "during a rollback", rolling.is_set, rev, good)
    finally:
        story.render.on_deploy = None
    assert record["deploy"] == 2 and record["render_deploys_of_revision"] == 1, record  # failed, rolled back
    assert story.render.service.commit == good


def test_two_pushes_a_second_apart_end_on_the_newer(crash_story):
    story = crash_story
    story.render.build_seconds = 5.0
    try:
        older = story.commit("older", "app/notes.md", "older push\n")
        wait_for("the older pipeline to start", lambda: of_revision(story, "pipeline", older), 60, 0.2)
        time.sleep(1)
        newer = story.commit("newer", "app/notes.md", "newer push\n")
        settled(story, older)
        settled(story, newer)
    finally:
        story.render.build_seconds = 1.0
    check_invariants(story, newer)
    order = [d["commit"]["id"] for d in story.render.deploy_history() if d["trigger"] != "rollback"]
    assert newer in order and (older not in order or order.index(older) < order.index(newer)), order
    TRIALS.append(
        {
            "database": story.database,
            "moment": "two pushes a second apart (slow Render)",
            "revision": newer[:7],
            "deployed_in_order": [r[:7] for r in order[-2:]],
        }
    )
