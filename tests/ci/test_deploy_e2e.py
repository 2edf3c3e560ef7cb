"""End to end: a real master, a scratch repository, the Render stand-in and the deployed-service stand-in.

One master serves the whole story, in order (each test builds on the previous ones):
1. a green commit on `main` is deployed to production, verified, and notified;
2. a commit whose deploy fails its health check is rolled back to the previous revision and the
   notification says so;
3. a commit failing a required check (lint) gets no deploy build at all;
4. after another green commit, deploys forced while one runs wait for it (one at a time, never
   overlapping) and the newest queued one supersedes an older queued one;
5. a forced rollback goes back to the good deploy before the current one; staging, which has no
   hook, ends "not configured"; a forced deploy of the failed revision is refused;
6. no secret value appears in any log (REST API), build property or twistd.log.
The pipeline runs only `lint` (`[checks] required = ["lint"]`, everything else disabled).
"""

from __future__ import annotations

import shutil
import time

import pytest

from harness import ROOT, commit_file, git, wait_for, wait_poller_ready
from render_standin import RenderStandin
from www_support import ADMIN_PASSWORD, ADMIN_USER, Client, builder_ids, default_secrets, start_www_master

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]

BUILD_TIMEOUT = 600
LINT_TOOLS = "black==24.10.0\nisort==5.13.2\nflake8==7.1.1\nmypy==1.13.0\n"
APP = '"""Stand-in for the reference service, for the deploy tests."""\n\n\ndef version() -> str:\n    return "1"\n'


BOOTSTRAP = "feature/bootstrap"


def make_repo(path):
    """A repository the lint job passes on: a typed package, the lint tools as requirements and the
    CI helper scripts; its first commit is on a branch that never deploys."""
    path.mkdir()
    shutil.copytree(ROOT / "scripts", path / "scripts", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (path / "app").mkdir()
    (path / "tests" / "app").mkdir(parents=True)
    (path / "app" / "__init__.py").write_text(APP)
    (path / "tests" / "app" / "__init__.py").write_text("")
    (path / "requirements-dev.txt").write_text(LINT_TOOLS)
    git(path, "init", "-q", "-b", BOOTSTRAP)
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "initial")
    return path


class Story:
    """What the tests share: the master, the repository, the stand-ins and the revisions so far."""

    def __init__(self, master, repo, render):
        self.master, self.repo, self.render = master, repo, render
        self.revisions: dict[str, str] = {}
        self.admin = Client(master, ADMIN_USER, ADMIN_PASSWORD)
        self.ids = builder_ids(master)

    def commit(self, name: str, relative: str, content: str, branch: str = "main") -> str:
        self.revisions[name] = commit_file(self.repo, relative, content, f"{name}: {relative}", branch=branch)
        return self.revisions[name]

    def pipeline_of(self, revision: str) -> dict:
        def done():
            found = [b for b in self.master.finished_builds("pipeline") if self.prop(b, "revision") == revision]
            return found[-1] if found else None

        return wait_for(f"the pipeline build of {revision[:7]}", done, BUILD_TIMEOUT, 2)

    def deploys(self, builder: str = "deploy-production") -> list[dict]:
        return self.master.builds(builder)

    def wait_deploy(self, count: int, builder: str = "deploy-production") -> dict:
        return self.master.wait_builds(builder, count, BUILD_TIMEOUT)[count - 1]

    def force(self, scheduler: str, builder: str, **params) -> int:
        status, answer = self.admin.rpc(f"forceschedulers/{scheduler}", "force", builderid=self.ids[builder], **params)
        assert status == 200, f"force {scheduler}: HTTP {status} {answer}"
        return answer["result"][1][str(self.ids[builder])]

    def step_states(self, build: dict) -> dict[str, str]:
        return {s["name"]: s["state_string"] for s in self.master.steps(build)}

    def prop(self, build: dict, name: str):
        return build["properties"].get(name, [None])[0]


@pytest.fixture(scope="module")
def story(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("deploy-e2e")
    repo = make_repo(tmp / "repo")
    render = RenderStandin(build_seconds=1.0, update_seconds=0.5).start()
    secrets = {
        **default_secrets(),
        "render_deploy_hook": render.deploy_hook,
        "render_rollback_hook": render.rollback_hook,
        "render_api_key": render.api_key,
        "render_service_id": render.service_id,
        "notify_webhook_url": render.notify_url,
        "github_token": "ghp_" + render.notify_token[-20:],
    }
    env = {
        "PIPELINE_CHECKS_REQUIRED": "lint",
        "PIPELINE_RENDER_API_URL": render.api_url,
        "PIPELINE_RENDER_REQUEST_TIMEOUT_SECONDS": "5",
        "PIPELINE_DEPLOY_PRODUCTION_URL": render.service.url,
        "PIPELINE_DEPLOY_PRODUCTION_HEALTH_RETRIES": "2",
        "PIPELINE_DEPLOY_PRODUCTION_HEALTH_INTERVAL_SECONDS": "1",
        "PIPELINE_DEPLOY_PRODUCTION_LIVE_TIMEOUT_SECONDS": "60",
        "PIPELINE_DEPLOY_PRODUCTION_POLL_INTERVAL_SECONDS": "1",
        "PIPELINE_GITHUB_API_URL": render.github_api_url,
        "PIPELINE_GITHUB_REPOSITORY": "acme/namaskah",
    }
    master = start_www_master(tmp, repo, secrets, env=env)
    try:
        wait_poller_ready(master)
        the_story = Story(master, repo, render)
        the_story.secret_values = [v.strip() for k, v in secrets.items() if k != "admin_htpasswd"]
        the_story.secret_values += [ADMIN_PASSWORD, render.hook_key, render.rollback_key, render.service_id]
        yield the_story
    finally:
        try:
            wait_for("all builds to finish", lambda: not master.api("builds", complete="false")["builds"], 300, 2)
        finally:
            master.stop()
            render.stop()


def test_other_branches_never_deploy(story):
    bootstrap = story.commit("bootstrap", "app/readme.md", "not deployed\n", branch=BOOTSTRAP)
    pipeline = story.pipeline_of(bootstrap)
    assert pipeline["results"] == 0, "lint fails on the scratch repository"
    assert story.step_states(pipeline)["deploy gate"] == f"branch {BOOTSTRAP} does not deploy"
    assert story.deploys() == []


def test_green_commit_on_main_is_deployed(story):
    good = story.commit("A", "app/notes.md", "first deploy\n")
    assert story.pipeline_of(good)["results"] == 0
    build = story.wait_deploy(1)
    assert build["results"] == 0, build["state_string"]
    assert story.prop(build, "deploy_revision") == good
    assert f"deployed {good[:7]} to production: live, healthy, smoke tests passed" in build["state_string"]
    states = story.step_states(build)
    for name in (
        "configuration",
        "pipeline gate",
        "deploy hook",
        "wait until live",
        "health check",
        "smoke tests",
        "notify",
    ):
        assert name in states, states
    assert "live after" in states["wait until live"]
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
    assert story.pipeline_of(bad)["results"] == 0
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
    pipeline = story.pipeline_of(broken)
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
    assert story.pipeline_of(fixed)["results"] == 0
    first = story.wait_deploy(3)
    assert first["results"] == 0 and story.prop(first, "deploy_revision") == fixed
    story.render.build_seconds = 4.0
    story.render.hook_codes = [503]  # the first forced deploy's hook is retried
    try:
        one = story.force("force_deploy_production", "deploy-production", reason="e2e: one", revision=fixed)
        wait_for(
            "the first forced deploy to start",
            lambda: story.master.api("builds", buildrequestid=one)["builds"],
            60,
            0.2,
        )
        two = story.force("force_deploy_production", "deploy-production", reason="e2e: two", revision=fixed)
        three = story.force("force_deploy_production", "deploy-production", reason="e2e: three", revision="")
        builds = story.master.wait_builds("deploy-production", 5, BUILD_TIMEOUT)
    finally:
        story.render.build_seconds = 1.0
    by_request = {b["buildrequestid"]: b for b in builds}
    assert two not in by_request, "the older queued deploy was not superseded"
    two_request = story.master.api(f"buildrequests/{two}")["buildrequests"][0]
    assert two_request["complete"] and two_request["results"] == 6  # CANCELLED
    a, b = by_request[one], by_request[three]
    assert a["results"] == 0 and b["results"] == 0, (a["state_string"], b["state_string"])
    assert story.prop(b, "deploy_revision") == fixed  # empty revision: the newest on main
    assert a["complete_at"] <= b["started_at"], "two deploys overlapped"
    hook_step = [s for s in story.master.steps(a) if s["name"] == "deploy hook"][0]
    (details,) = [log for log in story.master.api(f"steps/{hook_step['stepid']}/logs")["logs"]]
    assert "try 1/3: deploy hook answered HTTP 503" in story.master.log_text(details["logid"])
    assert story.render.max_in_progress == 1


def test_forced_rollback_staging_and_refused_deploy(story):
    good, fixed, broken = story.revisions["A"], story.revisions["D"], story.revisions["C"]
    story.force("force_rollback_production", "rollback-production", reason="e2e: roll back")
    rollback = story.wait_deploy(1, builder="rollback-production")
    assert rollback["results"] == 0, rollback["state_string"]
    assert story.prop(rollback, "deploy_revision") == good
    assert f"rolled back production to {good[:7]} (healthy)" in rollback["state_string"]
    assert f"the good deploy before {fixed[:7]}" in story.step_states(rollback)["rollback target"]
    assert story.render.service.commit == good
    assert any(n["kind"] == "rollback" and n["result"] == "success" for n in story.render.notifications)

    story.force("force_deploy_staging", "deploy-staging", reason="e2e: staging")
    staging = story.wait_deploy(1, builder="deploy-staging")
    assert staging["results"] == 3  # SKIPPED
    assert staging["state_string"] == "not configured: no staging_deploy_hook secret"

    deploys = len(story.master.finished_builds("deploy-production"))
    story.force("force_deploy_production", "deploy-production", reason="e2e: refuse", revision=broken)
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
