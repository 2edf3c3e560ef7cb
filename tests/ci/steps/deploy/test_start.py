"""Step tests of starting a deploy (`steps/deploy/start.py`): the Render API first, the hook without an
API key, one bounded retry policy (429 waits as told; 5xx backs off with jitter), resuming a deploy
already started instead of deploying twice, and never deploying an older revision after a newer one."""

from __future__ import annotations

import os
import random
import subprocess
from typing import ClassVar

from buildbot.process.results import FAILURE, SKIPPED, SUCCESS
from twisted.internet import defer
from twisted.trial import unittest

from deploy_steps import AUTH, HOOK, REV, SECRETS, DeployStepCase, deploy_url, make_target
from namaskah_ci.steps.deploy.start import NotOutdated, StartDeploy

HOOK_REF = f"{HOOK}&ref={REV}"
LIST = deploy_url("/deploys?limit=20")


class StartDeployTest(DeployStepCase, unittest.TestCase):
    def setup_start(self, **props):
        self.patch(random, "uniform", lambda low, high: high)  # no jitter in the expected waits
        return self.setup_with(StartDeploy(make_target(), name="start"), deploy_revision=REV, **props)

    @defer.inlineCallbacks
    def test_the_render_api_is_used_first_and_its_answer_recorded_at_once(self):
        yield self.setup_start()
        self.expect_http("GET", LIST, content_json=[], headers=AUTH)
        self.expect_http(
            "POST",
            deploy_url("/deploys"),
            code=201,
            content_json={"id": "dep-api1", "status": "created"},
            headers=AUTH,
            json_body={"commitId": REV},
        )
        self.expect_outcome(result=SUCCESS, state_string="1234567 accepted by the Render API: dep-api1")
        self.expect_property("render_deploy_id", "dep-api1")
        self.expect_property("deploy_started", True)
        yield self.run_step()
        stored = yield self.master.db.builds.getBuildProperties(self.build.buildid)  # in the database already
        assert stored["render_deploy_id"][0] == "dep-api1" and stored["deploy_started"][0] is True
        self.assert_no_leaks()

    @defer.inlineCallbacks
    def test_429_waits_as_told_and_5xx_backs_off(self):
        yield self.setup_start()
        self.expect_http("GET", LIST, content_json=[], headers=AUTH)
        post = {"headers": AUTH, "json_body": {"commitId": REV}}
        self.expect_http("POST", deploy_url("/deploys"), code=429, content_json={"message": "slow down"}, **post)
        self.expect_http("POST", deploy_url("/deploys"), code=503, **post)
        self.expect_http("POST", deploy_url("/deploys"), code=201, content_json={"id": "dep-3"}, **post)
        self.expect_outcome(result=SUCCESS)
        yield self.run_pumped()
        log = self.log_text()
        assert "Render API: HTTP 429 (rate limited): waiting 2s (1/6)" in log
        assert "try 1/6: Render API answered HTTP 503; again in 2.0s" in log

    @defer.inlineCallbacks
    def test_5xx_six_times_fails_bounded(self):
        yield self.setup_start()
        self.expect_http("GET", LIST, content_json=[], headers=AUTH)
        for _ in range(6):
            self.expect_http("POST", deploy_url("/deploys"), code=500, headers=AUTH, json_body={"commitId": REV})
        self.expect_outcome(result=FAILURE)
        self.expect_no_property("deploy_started")
        self.expect_property("deploy_failure", "Render API answered HTTP 500 (6 tries)")
        yield self.run_pumped()

    @defer.inlineCallbacks
    def test_a_deploy_of_the_revision_on_render_is_resumed_not_repeated(self):
        yield self.setup_start()
        running = {"deploy": {"id": "dep-old", "status": "build_in_progress", "commit": {"id": REV}}}
        self.expect_http("GET", LIST, content_json=[running], headers=AUTH)
        self.expect_outcome(result=SUCCESS)
        self.expect_property("render_deploy_id", "dep-old")
        self.expect_property("deploy_resumed", "dep-old")
        yield self.run_step()
        assert "resuming dep-old of 1234567 (found on Render (build_in_progress)): not deploying twice" in (
            self.get_nth_step(0).summary
        )

    @defer.inlineCallbacks
    def test_an_id_a_crashed_build_recorded_is_resumed_without_asking_render(self):
        yield self.add_history(
            "deploy-production",
            31,
            [{"number": 4, "results": 4, "props": {"deploy_revision": REV, "render_deploy_id": "dep-rec"}}],
        )
        yield self.setup_start()
        self.expect_outcome(result=SUCCESS)
        self.expect_property("render_deploy_id", "dep-rec")
        yield self.run_step()
        assert "recorded by deploy-production #4" in self.get_nth_step(0).summary

    @defer.inlineCallbacks
    def test_an_admins_redeploy_deploys_again(self):
        yield self.setup_start(redeploy=True)
        self.expect_http(
            "POST",
            deploy_url("/deploys"),
            code=201,
            content_json={"id": "dep-new"},
            headers=AUTH,
            json_body={"commitId": REV},
        )
        self.expect_outcome(result=SUCCESS)
        self.expect_property("render_deploy_id", "dep-new")
        yield self.run_step()


class HookOnlyTest(DeployStepCase, unittest.TestCase):
    secrets: ClassVar[dict[str, str]] = {
        k: v for k, v in SECRETS.items() if k not in ("render_api_key", "render_service_id")
    }

    @defer.inlineCallbacks
    def test_without_an_api_key_the_hook_gets_the_revision(self):
        yield self.setup_with(StartDeploy(make_target(), name="start"), deploy_revision=REV)
        self.expect_http("POST", HOOK_REF, content_json={"deploy": {"id": "dep-hook"}})
        self.expect_outcome(result=SUCCESS)
        self.expect_property("render_deploy_id", "dep-hook")
        yield self.run_step()
        self.assert_no_leaks()

    @defer.inlineCallbacks
    def test_a_4xx_fails_at_once(self):
        yield self.setup_with(StartDeploy(make_target(), name="start"), deploy_revision=REV)
        self.expect_http("POST", HOOK_REF, code=404, content_json={"message": "no"})
        self.expect_outcome(result=FAILURE)
        self.expect_property("deploy_failure", "deploy hook answered HTTP 404")
        yield self.run_pumped()


def commits(repo: str) -> tuple[str, str]:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@e",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@e",
    }

    def git(*args):
        return subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True).stdout

    git("init", "-q", "-b", "main")
    git("commit", "-q", "--allow-empty", "-m", "older")
    older = git("rev-parse", "HEAD").strip()
    git("commit", "-q", "--allow-empty", "-m", "newer")
    return older, git("rev-parse", "HEAD").strip()


class NotOutdatedTest(DeployStepCase, unittest.TestCase):
    def setUp(self):
        self.repo = os.path.abspath(self.mktemp())
        os.makedirs(self.repo)
        self.older, self.newer = commits(self.repo)
        return super().setUp()

    def setup_check(self, revision, **props):
        step = NotOutdated(make_target(), git_dirs=(os.path.join(self.repo, ".git"),), name="newest")
        return self.setup_with(step, deploy_revision=revision, **props)

    @defer.inlineCallbacks
    def test_an_older_revision_after_a_newer_one_is_skipped_naming_it(self):
        yield self.add_history(
            "deploy-production",
            32,
            [{"number": 7, "results": 0, "props": {"deploy_revision": self.newer, "deploy_started": True}}],
        )
        yield self.setup_check(self.older)
        self.expect_outcome(result=SKIPPED)
        self.expect_property(
            "deploy_superseded",
            f"not deploying {self.older[:7]}: {self.newer[:7]} is newer (deployed by deploy-production #7)",
        )
        yield self.run_step()

    @defer.inlineCallbacks
    def test_a_revision_already_deployed_is_not_deployed_again(self):
        yield self.add_history(
            "deploy-production",
            33,
            [{"number": 2, "results": 0, "props": {"deploy_revision": self.newer, "deploy_started": True}}],
        )
        yield self.setup_check(self.newer)
        self.expect_outcome(result=SKIPPED)
        self.expect_property("deploy_superseded", f"{self.newer[:7]} was already deployed by deploy-production #2")
        yield self.run_step()

    @defer.inlineCallbacks
    def test_a_newer_revision_and_a_crashed_try_go_ahead(self):
        yield self.add_history(
            "deploy-production",
            34,
            [
                {"number": 1, "results": 0, "props": {"deploy_revision": self.older, "deploy_started": True}},
                {"number": 2, "results": 4, "props": {"deploy_revision": self.newer, "deploy_started": True}},
            ],
        )
        yield self.setup_check(self.newer)
        self.expect_outcome(result=SUCCESS)
        self.expect_no_property("deploy_superseded")
        yield self.run_step()

    @defer.inlineCallbacks
    def test_an_admins_redeploy_is_not_skipped(self):
        yield self.add_history(
            "deploy-production",
            35,
            [{"number": 1, "results": 0, "props": {"deploy_revision": self.newer, "deploy_started": True}}],
        )
        yield self.setup_check(self.older, redeploy=True)
        self.expect_outcome(result=SUCCESS)
        yield self.run_step()
