"""A job build's steps (`job_factory.job_steps`) and `LoadJob` through Buildbot's step harness:
what reaches the worker (job.json, secret files), which steps follow, the remaining time."""

from __future__ import annotations

import json
import types

import pytest
from buildbot.process import remotetransfer
from buildbot.process.properties import Properties
from buildbot.process.results import FAILURE, SUCCESS
from buildbot.secrets.manager import SecretManager
from buildbot.test.fake.secrets import FakeSecretStorage
from buildbot.test.reactor import TestReactorMixin
from buildbot.test.steps import (
    ExpectDownloadFile,
    ExpectMkdir,
    ExpectRemoteRef,
    ExpectRmdir,
    ExpectShell,
    TestBuildStepMixin,
)
from twisted.internet import defer
from twisted.trial import unittest

from namaskah_ci import names
from namaskah_ci.jobs.commands import SERVICE_ENV, JobLayout
from namaskah_ci.pipeline.model import load_pipeline
from namaskah_ci.pipeline.source import PipelineConfig
from namaskah_ci.steps import job_steps as job_factory
from namaskah_ci.steps.job import CleanupJob, JobStep, PinnedGit
from namaskah_ci.steps.job_steps import JobSetup, job_steps, remaining_time
from namaskah_ci.steps.load import LoadJob
from namaskah_ci.steps.reports import PublishReports
from namaskah_ci.steps.services import StartServices, StopServices
from pipeline_support import job_of

LAYOUT = JobLayout(runner="/opt/master/bin/python", helpers_dir="/opt/helpers", cache_root="/var/cache/ci")
LOCAL = JobSetup(
    mode="local",
    layout=LAYOUT,
    repo_url="/srv/git/app.git",
    base_path="/usr/bin:/bin",
    nice=True,
    coverage_min=40,
    reports_root="/m/reports",
    reports_url="http://ci/plugins/wsgi_dashboards/reports/",
)
DOCKER = JobSetup(
    mode="docker",
    layout=JobLayout("python3", "../.namaskah-ci/helpers", "/cache"),
    repo_url="/srv/git/app.git",
    base_path="/usr/bin:/bin",
    transfer_helpers=True,
    services_in_worker=True,
    docker_ca_bundle="/etc/ca.crt",
    app_base_image="base:bookworm",
)
FILE = """
version: 1
requirements: [requirements/test.txt]
jobs:
  integration:
    services: [postgres, redis]
    secrets: [codecov_token]
    steps:
      - {name: unit, run: pytest tests/unit --junitxml=out/junit.xml}
      - {name: lint, run: flake8, continue: true}
      - {name: upload, run: upload, allow_failure: true, only_with_secret: codecov_token}
    reports: [{path: out/junit.xml, kind: junit}, {path: cov/coverage.xml, kind: coverage}]
  scan:
    requirements: []
    tools: [gitleaks]
    history: full
    steps: [gitleaks detect]
"""
PIPELINE = load_pipeline(FILE, ".namaskah-ci.yml")


def kinds(steps) -> list[str]:
    return [f"{type(step).__name__}:{step.name}" for step in steps]


def test_a_local_job_with_services_and_reports():
    steps = job_steps(job_of(PIPELINE, "integration"), LOCAL, "/usr/bin/python3.11")
    assert kinds(steps) == [
        "PinnedGit:git",
        "JobStep:report directories",
        "JobStep:virtualenv (Python 3.11)",
        "StopServices:reap stale services",
        "StartServices:start postgres + redis",
        "JobStep:unit",
        "JobStep:lint",
        "JobStep:upload",
        "PublishReports:publish reports",
        "StopServices:stop services",
        "CleanupJob:cleanup",
    ]
    by_name = {step.name: step for step in steps}
    # a job command (ci_step.py run: the job user's, when there is one), never root's own mkdir
    assert by_name["report directories"].command == [
        "/opt/master/bin/python", "/opt/helpers/ci_step.py", "--job-dir", "../.namaskah-ci", "run", "--",
        "mkdir", "-p", "--", "cov", "out",
    ]  # fmt: skip
    assert by_name["virtualenv (Python 3.11)"].command == [
        "/opt/master/bin/python",
        "/opt/helpers/ci_step.py",
        "--job-dir",
        "../.namaskah-ci",
        "venv",
        "--python",
        "/usr/bin/python3.11",
        "--cache-root",
        "/var/cache/ci",
        "-r",
        "requirements/test.txt",
    ]
    unit = by_name["unit"]
    assert unit.command[:7] == [
        "/opt/master/bin/python",
        "/opt/helpers/ci_step.py",
        "--job-dir",
        "../.namaskah-ci",
        "run",
        "--step",  # a step of the file: its ${NAME} must be defined (Namaskah CI's commands leave them out)
        "--",
    ]
    assert unit.command[7:] == ["bash", "-e", "-o", "pipefail", "-c", "pytest tests/unit --junitxml=out/junit.xml"]
    assert not unit.env and unit.logEnviron is False  # the service URLs: ci_step.py reads them on the worker
    assert unit.haltOnFailure and unit.maxTime is remaining_time
    assert by_name["lint"].haltOnFailure is False and by_name["lint"].flunkOnFailure is True
    upload = by_name["upload"]
    assert (upload.haltOnFailure, upload.flunkOnFailure, upload.warnOnFailure) == (False, False, True)
    assert by_name["stop services"].alwaysRun and by_name["publish reports"].alwaysRun and by_name["cleanup"].alwaysRun
    assert by_name["publish reports"].coverage_min == 40


def test_a_step_whose_secret_is_missing_is_skipped_saying_so():
    steps = job_steps(job_of(PIPELINE, "integration"), LOCAL, "python3.11", missing_secrets={"codecov_token"})
    (upload,) = [step for step in steps if step.name == "upload"]
    assert upload.doStepIf is False and upload.getResultSummary() == {"step": "skipped: no codecov_token secret"}


def test_a_docker_job_with_tools_and_full_history():
    steps = job_steps(job_of(PIPELINE, "scan"), DOCKER, "python3")
    assert kinds(steps) == [
        "PinnedGit:git",
        "JobStep:fetch history",
        "JobStep:required tools",
        "JobStep:gitleaks detect",
        "CleanupJob:cleanup",
    ]
    assert steps[1].command == [
        "git",
        "fetch",
        "--quiet",
        "--tags",
        "/srv/git/app.git",
        "+refs/heads/*:refs/remotes/origin/*",
    ]
    assert steps[2].command[-3:] == ["python3", "../.namaskah-ci/helpers/ci_require_tools.py", "gitleaks"]
    services = job_steps(job_of(PIPELINE, "integration"), DOCKER, "python3")
    assert not [s for s in services if isinstance(s, (StartServices, StopServices))]
    assert all(not s.env for s in services if isinstance(s, JobStep))


def test_the_operators_environment_and_the_docker_extras():
    scan = job_of(PIPELINE, "scan")
    assert DOCKER.env_for(scan) == {}
    docker_job = job_of(load_pipeline("version: 1\njobs:\n  c:\n    tools: [docker]\n    steps: [x]\n", "f"), "c")
    assert DOCKER.env_for(docker_job) == {"APP_BASE_IMAGE": "base:bookworm", "PIP_CERT_FILE": "/etc/ca.crt"}


@pytest.mark.parametrize("left, expected", [(700.4, 700), (0.2, 1), (-50, 1)])
def test_remaining_time_is_what_is_left_of_the_deadline(monkeypatch, left, expected):
    monkeypatch.setattr(job_factory, "time", types.SimpleNamespace(time=lambda: 1000.0))
    outcome: list = []
    Properties(**{names.PROP_DEADLINE: 1000.0 + left}).render(remaining_time).addBoth(outcome.append)
    assert outcome == [expected]


class LoadJobTest(TestBuildStepMixin, TestReactorMixin, unittest.TestCase):
    @defer.inlineCallbacks
    def setUp(self):  # type: ignore[override]  # trial waits for the Deferred a setUp returns
        scratch = self.mktemp()
        self.CONFIG = PipelineConfig(
            repo_url=f"{scratch}/no-repo.git",
            poller_dir=f"{scratch}/poller",
            mirror_dir=f"{scratch}/mirror",
            default_file=f"{scratch}/default.yml",
            default_label="default.yml",
            registry_path=f"{scratch}/r.json",
            default_branch="main",
        )
        self.setup_test_reactor()
        yield self.setup_test_build_step()
        storage = FakeSecretStorage()
        storage.reconfigService(secretdict={"codecov_token": "tok-3f9a"})
        manager = SecretManager()
        manager.services = [storage]
        yield manager.setServiceParent(self.master)
        self.added: list = []

    def setup_load(self, job, revision="a" * 40):
        step = LoadJob(self.CONFIG, LOCAL, name="job")  # the fake data API takes identifiers only
        self.setup_step(step)
        self.build.addStepsAfterCurrentStep = self.added.extend
        self.build.getBuilderId = lambda: defer.succeed(7)
        self.build.number = 3
        self.build.setProperty("buildername", job.builder, "test")
        self.build.setProperty("branch", "main", "test")
        self.build.setProperty(names.PROP_JOB, job.to_dict(), "trigger")
        self.build.setProperty(names.PROP_JOB_REVISION, revision, "trigger")
        self.get_nth_step(0).interpreter = lambda spec: defer.succeed("/usr/bin/python3.11")

    @defer.inlineCallbacks
    def test_the_definition_from_the_trigger_writes_the_job_dir_and_adds_the_steps(self):
        job = job_of(PIPELINE, "integration")
        self.setup_load(job)
        written: dict = {}
        rmdirs = [
            ExpectRmdir(dir=f".namaskah-ci/{part}", log_environ=False).exit(0) for part in ("secrets", "tmp", "venv")
        ]
        self.expect_commands(
            *rmdirs,
            ExpectMkdir(dir="wkdir", log_environ=False).exit(0),
            ExpectDownloadFile(
                workerdest="../.namaskah-ci/job.json",
                workdir="wkdir",
                blocksize=32768,
                maxsize=None,
                mode=0o644,
                reader=ExpectRemoteRef(remotetransfer.StringFileReader),
            )
            .download_string(lambda text: written.update(job=text))
            .exit(0),
            ExpectDownloadFile(
                workerdest="../.namaskah-ci/secrets/CODECOV_TOKEN",
                workdir="wkdir",
                blocksize=32768,
                maxsize=None,
                mode=0o600,
                reader=ExpectRemoteRef(remotetransfer.StringFileReader),
            )
            .download_string(lambda text: written.update(secret=text))
            .exit(0),
        )
        self.expect_outcome(result=SUCCESS, state_string=f"integration at {'a' * 7}")
        self.expect_property(names.PROP_STATUS_CONTEXT, "integration")
        yield self.run_step()
        document = json.loads(written["job"])
        assert document["env"]["NAMASKAH_CI_REVISION"] == "a" * 40
        assert document["pass"] == [*SERVICE_ENV["postgres"], *SERVICE_ENV["redis"]]
        assert document["interpreter"] == "/usr/bin/python3.11" and document["nice"] == 10
        assert written["secret"] == b"tok-3f9a" or written["secret"] == "tok-3f9a"
        assert "tok-3f9a" not in json.dumps(document)
        added = [type(s).__name__ for s in self.added]
        assert added[:2] == [PinnedGit.__name__, JobStep.__name__] and added[-1] == CleanupJob.__name__
        assert PublishReports.__name__ in added

    @defer.inlineCallbacks
    def test_a_definition_for_another_builder_is_not_used(self):
        self.setup_load(job_of(PIPELINE, "scan"))
        self.build.setProperty("buildername", "integration", "test")
        self.expect_outcome(result=FAILURE)
        yield self.run_step()
        summary = self.get_nth_step(0).summary  # read from the (missing) repository at the pinned revision instead
        assert summary.startswith(f"revision {'a' * 7} is not in the repository"), summary


class JobStepTest(TestBuildStepMixin, TestReactorMixin, unittest.TestCase):
    def setUp(self):
        self.setup_test_reactor()
        return self.setup_test_build_step()

    @defer.inlineCallbacks
    def test_a_command_killed_by_a_signal_says_so(self):
        yield self.setup_step(JobStep(name="tests", command=["pytest"]))
        self.expect_commands(ExpectShell(workdir="wkdir", command=["pytest"], log_environ=False).exit(-1))
        self.expect_outcome(result=FAILURE, state_string="tests: killed by a signal")
        yield self.run_step()

    @defer.inlineCallbacks
    def test_an_ordinary_failure_keeps_buildbots_summary(self):
        yield self.setup_step(JobStep(name="tests", command=["pytest"]))
        self.expect_commands(ExpectShell(workdir="wkdir", command=["pytest"], log_environ=False).exit(1))
        self.expect_outcome(result=FAILURE, state_string="'pytest' (failure)")
        yield self.run_step()
