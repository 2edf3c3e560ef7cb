"""End to end: a real master, a scratch repository, the Render stand-in and the deployed-service stand-in.

One master serves the whole story, in order (each test builds on the previous ones):
1. a green commit on `main` is deployed to production, verified, and notified;
2. a commit whose deploy fails its health check is rolled back to the previous revision and the
   notification says so;
3. a commit failing a required check (lint) gets no deploy build at all;
4. after another green commit, deploys forced while one runs wait for it (one at a time, never
   overlapping); the newest queued one runs first, and a deploy of a revision already deployed is
   skipped saying so unless the admin asked to deploy again;
5. a forced rollback goes back to the good deploy before the current one; staging, which has no
   hook, ends "not configured"; a forced deploy of the failed revision is refused;
6. no secret value appears in any log (REST API), build property or twistd.log.
The pipeline runs only `lint` (`[checks] required = ["lint"]`, everything else disabled).
"""

from __future__ import annotations

import time

import pytest

from deploy_story import BOOTSTRAP, BUILD_TIMEOUT, Story, make_repo, stand_in_secrets, stand_in_settings
from harness import running, wait_for
from render_standin import RenderStandin
from www_support import ADMIN_PASSWORD, force, start_www_master

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]


class DeployStory(Story):
    secret_values: list[str]  # what no log, summary or property may show


@pytest.fixture(scope="module")
def story(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("deploy-e2e")
    repo = make_repo(tmp / "repo")
    render = RenderStandin(build_seconds=1.0, update_seconds=0.5).start()
    secrets = stand_in_secrets(render)
    with running(lambda: start_www_master(tmp, repo, secrets, env=stand_in_settings(render)), render) as master:
        the_story = DeployStory(master, repo, render)
        the_story.secret_values = [v.strip() for k, v in secrets.items() if k != "admin_htpasswd"]
        the_story.secret_values += [ADMIN_PASSWORD, render.hook_key, render.rollback_key, render.service_id]
        yield the_story


def test_other_branches_never_deploy(story):
    bootstrap = story.commit("bootstrap", "app/readme.md", "not deployed\n", branch=BOOTSTRAP)
    pipeline = story.master.pipeline_of(bootstrap)
    assert pipeline["results"] == 0, "lint fails on the scratch repository"
    assert story.step_states(pipeline)["deploy gate"] == f"branch {BOOTSTRAP} does not deploy"
    assert story.deploys() == []


def test_green_commit_on_main_is_deployed(story):
    good = story.commit("A", "app/notes.md", "first deploy\n")
    assert story.master.pipeline_of(good)["results"] == 0
    build = story.wait_deploy(1)
    assert build["results"] == 0, build["state_string"]
    assert story.prop(build, "deploy_revision") == good
    assert f"deployed {good[:7]} to production: live, healthy, smoke tests passed" in build["state_string"]
    states = story.step_states(build)
    for name in (
        "configuration",
        "pipeline gate",
        "newest revision",
        "start deploy",
        "wait until live",
        "health check",
        "smoke tests",
        "notify",
    ):
        assert name in states, states
    assert "live after" in states["wait until live"]
    assert "accepted by the Render API" in states["start deploy"]  # the API first: it has the key
    assert len(story.render.deploys_of(good)) == 1
    assert story.render.service.commit == good
    assert story.prop(build, "render_deploy_id") == story.render.live_deploy()["id"]
    (note,) = [n for n in story.render.notifications if n["revision"] == good]
    assert note["result"] == "success" and note["environment"] == "production"
    assert note["deploy_id"] == story.prop(build, "render_deploy_id")
    assert "#/builders/" in note["build_url"] and note["text"].startswith("[production] deployed")
    assert any(s["context"] == "deploy/production" and s["state"] == "success" for s in story.render.statuses)


def test_failed_health_check_rolls_back_to_the_previous_revision(story):
    good = story.revisions["A"]
    bad = story.commit("B", "app/notes.md", "this one will be unhealthy\n")
    story.render.service.unhealthy_revisions.add(bad)
    assert story.master.pipeline_of(bad)["results"] == 0
    build = story.wait_deploy(2)
    assert build["results"] == 2
    assert f"deployed {bad[:7]}, health check failed, rolled back to {good[:7]} (healthy)" in build["state_string"]
    assert story.prop(build, "rolled_back_to") == good
    states = story.step_states(build)
    assert "unhealthy after 2 tries" in states["health check"]
    assert "by Render API rollback" in states["automatic rollback"]
    assert states["health check after rollback"].startswith("healthy")
    assert story.render.service.commit == good
    assert story.render.live_deploy()["trigger"] == "rollback"
    (note,) = [n for n in story.render.notifications if n["revision"] == bad]
    assert note["result"] == "failure" and note["rolled_back_to"] == good
    assert "rolled back to" in note["text"] and note["failure"] == "health check failed"


def test_failing_check_means_no_deploy_build(story):
    before = len(story.deploys())
    broken = story.commit("C", "app/broken.py", "import os\n")  # flake8 F401: lint fails
    pipeline = story.master.pipeline_of(broken)
    assert pipeline["results"] == 2
    gate = story.step_states(pipeline)["deploy gate"]
    assert gate == "not deploying: lint: failure"
    time.sleep(5)
    assert len(story.deploys()) == before
    assert not story.master.api("buildrequests", builderid=story.ids["deploy-production"], complete="false")[
        "buildrequests"
    ]


def test_deploys_requested_together_run_one_after_another(story):
    fixed = story.commit("D", "app/broken.py", '"""Fixed."""\n')
    assert story.master.pipeline_of(fixed)["results"] == 0
    first = story.wait_deploy(3)
    assert first["results"] == 0 and story.prop(first, "deploy_revision") == fixed
    story.render.build_seconds = 4.0
    story.render.deploy_codes = [503]  # the first forced deploy's API call is retried
    try:
        one = force(story.admin, "deploy-production", reason="e2e: one", revision=fixed, redeploy=True)
        wait_for(
            "the first forced deploy to start",
            lambda: story.master.api("builds", buildrequestid=one)["builds"],
            60,
            0.2,
        )
        two = force(story.admin, "deploy-production", reason="e2e: two", revision=fixed)
        three = force(story.admin, "deploy-production", reason="e2e: three", revision="")
        builds = story.master.wait_builds("deploy-production", 6, BUILD_TIMEOUT)
    finally:
        story.render.build_seconds = 1.0
    by_request = {b["buildrequestid"]: b for b in builds}
    a, b, c = by_request[one], by_request[two], by_request[three]
    assert a["results"] == 0, a["state_string"]  # deployed again: the admin asked
    assert a["complete_at"] <= c["started_at"] <= b["started_at"], "the newest queued deploy goes first, one at a time"
    for skipped in (b, c):
        assert skipped["results"] == 3, skipped["state_string"]  # SKIPPED, saying why
        assert f"{fixed[:7]} was already deployed by deploy-production #{a['number']}" in skipped["state_string"]
    assert story.prop(c, "deploy_revision") == fixed  # empty revision: the newest on main
    start = next(s for s in story.master.steps(a) if s["name"] == "start deploy")
    (details,) = story.master.api(f"steps/{start['stepid']}/logs")["logs"]
    assert "try 1/6: Render API answered HTTP 503" in story.master.log_text(details["logid"])
    assert len(story.render.deploys_of(fixed)) == 2  # the pipeline's and the admin's redeploy, no more
    assert story.render.max_in_progress == 1


def test_forced_rollback_staging_and_refused_deploy(story):
    good, fixed, broken = story.revisions["A"], story.revisions["D"], story.revisions["C"]
    force(story.admin, "rollback-production", reason="e2e: roll back")
    rollback = story.wait_deploy(1, builder="rollback-production")
    assert rollback["results"] == 0, rollback["state_string"]
    assert story.prop(rollback, "deploy_revision") == good
    assert f"rolled back production to {good[:7]} (healthy)" in rollback["state_string"]
    assert f"the good deploy before {fixed[:7]}" in story.step_states(rollback)["rollback target"]
    assert story.render.service.commit == good
    assert any(n["kind"] == "rollback" and n["result"] == "success" for n in story.render.notifications)

    force(story.admin, "deploy-staging", reason="e2e: staging")
    staging = story.wait_deploy(1, builder="deploy-staging")
    assert staging["results"] == 3  # SKIPPED
    assert staging["state_string"] == "not configured: no staging_deploy_hook secret"

    deploys = len(story.master.finished_builds("deploy-production"))
    force(story.admin, "deploy-production", reason="e2e: refuse", revision=broken)
    refused = story.wait_deploy(deploys + 1)
    assert refused["results"] == 2
    assert "not deployed: pipeline #" in refused["state_string"] and "lint: failure" in refused["state_string"]
    assert story.render.service.commit == good


def test_no_secret_in_any_log_property_or_twistd_log(story):
    texts = [story.master.twistd_log()]
    for build in story.master.api("builds", property="*")["builds"]:
        texts.append(repr(build["properties"]))
        texts.append(build["state_string"] or "")
        for step in story.master.steps(build):
            texts.append(step["state_string"] or "")
            for log in story.master.api(f"steps/{step['stepid']}/logs")["logs"]:
                texts.append(story.master.log_text(log["logid"]))
    everything = "\n".join(texts)
    assert len(everything) > 10_000
    for value in story.secret_values:
        for line in value.splitlines():
            assert line not in everything, f"a secret ({line[:6]}…) leaked"
