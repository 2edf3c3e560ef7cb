"""Pull requests without a running master: the pipeline's first step ends a conflicting PR and, in
local mode, an unapproved fork's PR before any job (Buildbot's step test harness); the commit
statuses go to the PR's head; a fork's job setup keeps its caches apart; one build per reuse key
at a time (`reuse.InFlight`)."""

from __future__ import annotations

from buildbot.process.properties import Properties
from buildbot.process.results import FAILURE, WARNINGS
from buildbot.reporters.github import GitHubStatusPush
from buildbot.test.reactor import TestReactorMixin
from buildbot.test.steps import TestBuildStepMixin
from twisted.internet import defer
from twisted.trial import unittest

from namaskah_ci.github.reporters import CommitStatusPush
from namaskah_ci.jobs.commands import JobLayout
from namaskah_ci.jobs.reuse import InFlight
from namaskah_ci.pipeline.source import PipelineConfig
from namaskah_ci.steps.job_steps import JobSetup
from namaskah_ci.steps.load import LoadPipeline, pull_request_stop

CONFIG = PipelineConfig(
    repo_url="/nonexistent/repo",
    poller_dir="/nonexistent/poller",
    mirror_dir="/nonexistent/mirror",
    default_file="/nonexistent/default.yml",
    default_label="default.yml",
    registry_path="/nonexistent/r.json",
    default_branch="main",
)
PR = {
    "branch": "refs/pull/7/merge",
    "pr_number": 7,
    "pr_head": "a" * 40,
    "pr_base": "main",
    "pr_head_repo": "acme/namaskah",
    "pr_fork": False,
}


class LoadPipelinePullRequestTest(TestBuildStepMixin, TestReactorMixin, unittest.TestCase):
    @defer.inlineCallbacks
    def setUp(self):  # type: ignore[override]  # trial waits for the Deferred a setUp returns
        self.setup_test_reactor()
        yield self.setup_test_build_step()

    def start(self, fork_approval: bool, **properties):
        step = self.setup_step(LoadPipeline(CONFIG, fork_approval=fork_approval, name="pipeline_file"))
        for name, value in properties.items():
            self.build.setProperty(name, value, "test")
        return step

    @defer.inlineCallbacks
    def test_a_conflicting_pull_request_ends_at_once_naming_its_base(self):
        self.start(False, **PR, pr_conflict="main")
        self.expect_outcome(
            result=FAILURE,
            state_string=(
                "pull request #7 conflicts with main: GitHub has no merge result (refs/pull/7/merge): no job run"
            ),
        )
        yield self.run_step()
        self.assertEqual(self.get_nth_step(0).build_summary, "conflicts with main")

    @defer.inlineCallbacks
    def test_a_forks_pull_request_waits_for_an_admin_in_local_mode(self):
        self.start(True, **{**PR, "pr_fork": True, "pr_head_repo": "mallory/namaskah"})
        self.expect_outcome(result=WARNINGS)
        yield self.run_step()
        step = self.get_nth_step(0)
        self.assertIn("from the fork mallory/namaskah: waiting for an admin's approval", step.summary)
        self.assertIn("number 7", step.summary)
        self.assertTrue(self.build.terminate)  # the fan-out never starts

    def test_approved_forks_and_docker_mode_forks_and_trusted_prs_go_on(self):
        for fork_approval, extra in ((True, {"pr_approved_by": "admin"}), (False, {}), (True, {"pr_fork": False})):
            values = {**PR, "pr_fork": True, **extra}
            self.assertIsNone(pull_request_stop(values.get, fork_approval), (fork_approval, extra))
        self.assertIsNone(pull_request_stop({"branch": "main"}.get, True))


class StatusTargetTest(unittest.TestCase):
    def test_a_pull_requests_statuses_go_to_its_head_not_the_merge_commit(self):
        posted = []

        def create(self, repo_user, repo_name, sha, state, **kwargs):
            posted.append(sha)
            return defer.succeed(None)

        push = CommitStatusPush.__new__(CommitStatusPush)
        original = GitHubStatusPush.createStatus
        GitHubStatusPush.createStatus = create
        try:
            props = Properties()
            push.createStatus("acme", "namaskah", "m" * 40, "success", props=props)
            props.setProperty("pr_head", "h" * 40, "test")
            push.createStatus("acme", "namaskah", "m" * 40, "success", props=props)
        finally:
            GitHubStatusPush.createStatus = original
        self.assertEqual(posted, ["m" * 40, "h" * 40])


class UntrustedSetupTest(unittest.TestCase):
    def test_a_forks_jobs_get_caches_of_their_own_in_local_mode(self):
        layout = JobLayout(runner="python3", helpers_dir="/h", cache_root="/var/cache/namaskah/")
        setup = JobSetup(mode="local", layout=layout, repo_url="/r", base_path="/usr/bin")
        self.assertEqual(setup.untrusted().layout.cache_root, "/var/cache/namaskah/untrusted")
        docker = JobSetup(mode="docker", layout=layout, repo_url="/r", base_path="/usr/bin")
        self.assertIs(docker.untrusted(), docker)  # another volume (workers/docker/config.py)


class InFlightTest(unittest.TestCase):
    def test_one_build_runs_a_key_the_others_wait_for_it(self):
        running = InFlight()
        self.assertIsNone(running.claim("k", "check/1"))
        self.assertEqual(running.claim("k", "check/2"), "check/1")
        waiting = running.wait("k")
        self.assertFalse(waiting.called)
        running.release("k", "check/2")  # not the one running it: nothing changes
        self.assertFalse(waiting.called)
        running.release("k", "check/1")
        self.assertTrue(waiting.called)
        self.assertTrue(running.wait("k").called)  # nobody runs it now
        self.assertIsNone(running.claim("k", "check/2"))


def test_the_job_directory_is_reached_without_passing_through_the_checkout():
    import posixpath

    from namaskah_ci.steps.job import job_path

    # a build stopped while cloning leaves no `build/`: `build/../.namaskah-ci` would not resolve
    assert job_path(posixpath, "build", "../.namaskah-ci", "secrets") == ".namaskah-ci/secrets"
