"""Docker mode: only builds of `[workers] docker_socket_branches` (default: the deploy branches and the
default branch) get the Docker engine's socket for `tools: [docker]`; any other ref's `required tools`
step ends FAILURE naming why and the setting, before anything runs (unit: the config plan and the
step; `docker`: a container as the plan renders it, on the real engine)."""

from __future__ import annotations

import dataclasses
import re

import pytest
from buildbot.process.properties import Properties
from buildbot.process.results import FAILURE, SUCCESS
from buildbot.test.reactor import TestReactorMixin
from buildbot.test.steps import ExpectShell, TestBuildStepMixin
from twisted.internet import defer
from twisted.trial import unittest

from namaskah_ci import names
from namaskah_ci.builders.setup import make_job_setup
from namaskah_ci.jobs import engine_access
from namaskah_ci.pipeline.model import load_pipeline
from namaskah_ci.steps.job_steps import RequiredTools, job_steps
from namaskah_ci.workers.docker import config as dc
from namaskah_ci.workers.plan import WorkerPlan
from pipeline_support import entry_of, job_of
from unit_support import REGISTRY, docker_settings

SOCKET = f"{dc.DOCKER_SOCKET}:{dc.DOCKER_SOCKET}"
DOCKER_JOB = job_of(load_pipeline("version: 1\njobs:\n  c:\n    tools: [docker, trivy]\n    steps: [x]\n", "f"), "c")


def build_of(branch: str | None, fork: bool = False) -> Properties:
    props = Properties()
    props.setProperty("branch", branch, "test")
    if fork:
        props.setProperty(names.PROP_PR_FORK, True, "test")
    return props


def socket_mounted(settings, branch: str | None, fork: bool = False) -> bool:
    return SOCKET in dc._JobValues(settings, entry_of(REGISTRY, "container-scan")).volumes(build_of(branch, fork))


def test_by_default_the_deploy_branches_and_the_default_branch_get_the_socket():
    settings = docker_settings()
    assert settings.workers.docker_socket_branches == []
    assert {settings.deploy[env].branch for env in settings.environments} == {"main", "develop"}
    assert engine_access.allowed_branches(settings) == ("main", "develop")
    for branch in ("main", "refs/heads/main", "develop"):
        assert socket_mounted(settings, branch), branch
    for other in ("feature/x", "refs/pull/7/merge", "mainx", "", None):
        assert not socket_mounted(settings, other), other
    assert not socket_mounted(settings, "main", fork=True)


def test_the_setting_names_the_branches_and_follows_the_deploy_sections():
    only = docker_settings(docker_socket_branches=["release", "release"])
    assert engine_access.allowed_branches(only) == ("release",)
    assert socket_mounted(only, "release") and not socket_mounted(only, "main")
    settings = docker_settings()
    staging = dataclasses.replace(settings.deploy["staging"], branch="")  # staging switched off
    without = dataclasses.replace(settings, deploy={**settings.deploy, "staging": staging})
    assert engine_access.allowed_branches(without) == ("main",)
    assert not socket_mounted(without, "develop")


def test_the_refusal_is_one_line_naming_why_and_the_setting():
    allowed = ("main", "develop")
    assert engine_access.refusal(allowed, "main", False) == ""
    line = engine_access.refusal(allowed, "feature/x", False)
    assert line == (
        "docker: branch feature/x does not get the Docker engine's socket (root on its host): "
        "[workers] docker_socket_branches gives it to main, develop only"
    )
    assert "a build without a branch" in engine_access.refusal(allowed, None, False)
    fork = engine_access.refusal(allowed, "main", True)
    assert "fork's pull request" in fork and "[workers] docker_socket_branches" in fork
    assert "\n" not in line + fork


def test_a_job_with_docker_checks_the_branch_in_either_mode():
    settings = docker_settings(docker_socket_branches=["main"])
    setup = make_job_setup(settings, dc.make_docker_plan(settings))
    assert setup.docker_socket_branches == ("main",)
    [tools] = [step for step in job_steps(DOCKER_JOB, setup, "python3") if step.name == "required tools"]
    assert type(tools).__name__ == "RequiredTools" and tools.docker_branches == ("main",) and tools.haltOnFailure
    assert tools.command[-3:] == ["../.namaskah-ci/helpers/ci_require_tools.py", "docker", "trivy"]
    local = make_job_setup(settings, WorkerPlan(runner="python3", cache_root="/c", docker_socket_branches=("main",)))
    [tools] = [step for step in job_steps(DOCKER_JOB, local, "python3") if step.name == "required tools"]
    assert type(tools).__name__ == "RequiredTools" and tools.docker_branches == ("main",)  # local: the sandbox's


COMMAND = ["python3", "ci_require_tools.py", "docker"]


class RequiredToolsStepTest(TestBuildStepMixin, TestReactorMixin, unittest.TestCase):
    def setUp(self):
        self.setup_test_reactor()
        return self.setup_test_build_step()

    @defer.inlineCallbacks
    def test_another_branch_fails_naming_the_setting_without_running_anything(self):
        yield self.setup_step(RequiredTools(("main", "develop"), name="tools", command=COMMAND, haltOnFailure=True))
        self.build.setProperty("branch", "feature/x", "test")
        self.expect_outcome(result=FAILURE)
        self.expect_log_file("refused", engine_access.refusal(("main", "develop"), "feature/x", False) + "\n")
        yield self.run_step()
        summary = yield self.get_nth_step(0).getResultSummary()
        assert summary["step"] == "docker refused: feature/x is not in [workers] docker_socket_branches"
        assert summary["build"].endswith(summary["step"])

    @defer.inlineCallbacks
    def test_a_forks_pull_request_fails_even_on_an_allowed_branch_name(self):
        yield self.setup_step(RequiredTools(("main",), name="tools", command=COMMAND))
        self.build.setProperty("branch", "main", "test")
        self.build.setProperty(names.PROP_PR_FORK, True, "test")
        self.expect_outcome(result=FAILURE)
        yield self.run_step()
        summary = yield self.get_nth_step(0).getResultSummary()
        assert summary["step"] == "docker refused: a fork's pull request"

    @defer.inlineCallbacks
    def test_an_allowed_branch_runs_the_check(self):
        yield self.setup_step(RequiredTools(("main",), name="tools", command=COMMAND))
        self.build.setProperty("branch", "refs/heads/main", "test")
        self.expect_commands(ExpectShell(workdir="wkdir", command=COMMAND, log_environ=False).exit(0))
        self.expect_outcome(result=SUCCESS)
        yield self.run_step()


@pytest.mark.docker
@pytest.mark.timeout(180)
def test_a_container_planned_for_another_branch_cannot_reach_the_engine():
    """The volumes the plan renders, on the real engine: main's container answers `docker version`, a
    feature branch's finds no engine (its socket is not there)."""
    docker = pytest.importorskip("docker")
    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:  # no engine here
        pytest.skip(f"no Docker engine answers: {exc}")
    image = "namaskah-ci/tools:latest"
    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        pytest.skip(f"{image} is missing: make images")
    values = dc._JobValues(docker_settings(), entry_of(REGISTRY, "container-scan"))
    seen = {}
    for branch in ("main", "feature/x"):
        binds = [volume for volume in values.volumes(build_of(branch)) if volume.startswith("/")]
        output = client.containers.run(
            image,
            ["sh", "-c", "docker version --format 'server {{.Server.Version}}' 2>&1; true"],
            volumes=binds,
            entrypoint=[],
            remove=True,
            network_mode="none",
            labels={"org.namaskah.ci.role": "test-socket-branches"},
        )
        seen[branch] = output.decode().strip()
    client.close()
    assert seen["main"].startswith("server "), seen
    assert not re.search(r"server \d", seen["feature/x"]), seen
    assert "Cannot connect to the Docker daemon" in seen["feature/x"], seen
