"""The check factory's step list, and the job deadline: each command's maxTime is what is left of the job's
timeout. Some factory steps are run through Buildbot's step harness to check what reaches the worker."""

from __future__ import annotations

import types

import pytest
from twisted.internet import defer
from twisted.trial import unittest

from buildbot.process.buildstep import _BuildStepFactory
from buildbot.process.properties import Properties
from buildbot.process.results import SUCCESS
from buildbot.steps.shell import SetPropertyFromCommand, ShellCommand
from buildbot.steps.source.git import Git
from buildbot.test.reactor import TestReactorMixin
from buildbot.test.steps import ExpectShell, TestBuildStepMixin

from namaskah_ci import factories
from namaskah_ci.factories import (
    DEADLINE_PROPERTY,
    VENV_PROPERTY,
    check_scheduler_name,
    make_check_factory,
    make_pipeline_factory,
    parse_venv,
    remaining_time,
)
from namaskah_ci.jobs import make_jobs
from namaskah_ci.settings import load_settings
from namaskah_ci.steps.fanout import FanOut
from namaskah_ci.steps.gated import SecretGatedCommand
from namaskah_ci.steps.reports import PublishReports
from namaskah_ci.steps.services import StartServices, StopServices

RUNNER = "/opt/master/bin/python"
INTERPRETER = "/usr/bin/python3.11"
CACHE = "/var/cache/ci"


def settings_for(tmp: str):
    return load_settings({"PIPELINE_MASTER_BASEDIR": f"{tmp}/master", "PIPELINE_REPO_URL": "/srv/git/app.git"})


def job(name: str):
    (found,) = [j for j in make_jobs(coverage_min=40) if j.name == name]
    return found


def factory_for(name: str, tmp: str = "/tmp/ci-test"):
    return make_check_factory(job(name), settings_for(tmp), runner=RUNNER, interpreter=INTERPRETER, cache_root=CACHE)


def steps_for(name: str) -> list:
    return [f.buildStep() for f in factory_for(name).steps]


def render(value, **props):
    properties = Properties(**props)
    outcome: list = []
    properties.render(value).addBoth(outcome.append)
    return outcome[0]


# --- the step lists -------------------------------------------------------------------------------


def test_a_test_job_checks_out_builds_its_venv_runs_pytest_uploads_and_publishes():
    steps = steps_for("test-py3.9")
    assert steps[0].name == "deadline" and steps[0].hideStepIf
    git = steps[1]
    assert isinstance(git, Git)
    assert git.repourl == "/srv/git/app.git" and (git.mode, git.method) == ("full", "fresh") and git.haltOnFailure
    venv = next(s for s in steps if isinstance(s, SetPropertyFromCommand) and not isinstance(s, StartServices))
    assert venv.command == [RUNNER, "scripts/ci_venv.py", "--python", INTERPRETER, "--cache-root", CACHE,
                            "-r", "requirements-dev.txt"]
    assert venv.haltOnFailure and venv.extract_fn is parse_venv
    names = [s.name for s in steps]
    assert names.index("deadline") < names.index("git") < names.index(venv.name) < names.index("pytest")
    assert names.index("pytest") < names.index("codecov") < names.index("publish reports") == len(names) - 1
    codecov = steps[names.index("codecov")]
    assert isinstance(codecov, SecretGatedCommand) and codecov.secret == "codecov_token"
    assert not codecov.flunkOnFailure and codecov.warnOnFailure
    assert not any(isinstance(s, (StartServices, StopServices)) for s in steps)


def test_integration_starts_services_after_the_venv_and_always_stops_them():
    steps = steps_for("integration")
    kinds = [type(s) for s in steps]
    reap, start, stop = kinds.index(StopServices), kinds.index(StartServices), len(steps) - 1
    assert reap < start < [s.name for s in steps].index("integration tests") < stop
    assert isinstance(steps[stop], StopServices) and steps[stop].alwaysRun and steps[stop].flunkOnFailure
    assert not steps[reap].flunkOnFailure and not steps[reap].haltOnFailure
    assert steps[start].haltOnFailure and steps[start].services_started == ("postgres", "redis")
    publish = next(s for s in steps if isinstance(s, PublishReports))
    assert publish.alwaysRun and steps.index(publish) < stop


def test_migration_runs_its_four_steps_between_services():
    names = [s.name for s in steps_for("migration-test")]
    start = names.index("start postgres")
    assert names[start + 1:start + 5] == ["upgrade head", "downgrade -1", "upgrade head again",
                                          "upgrade head (idempotent)"]
    assert names[-1] == "stop services"


def test_lint_steps_do_not_halt_so_every_linter_reports():
    steps = {s.name: s for s in steps_for("lint")}
    for name in ("black", "isort", "flake8", "mypy"):
        assert isinstance(steps[name], ShellCommand) and not steps[name].haltOnFailure, name
        assert steps[name].flunkOnFailure, name


def test_tools_are_checked_before_the_venv():
    steps = steps_for("container-scan")
    names = [s.name for s in steps]
    tools = steps[names.index("required tools")]
    assert tools.command == [RUNNER, "scripts/ci_require_tools.py", "docker", "trivy"] and tools.haltOnFailure
    assert names.index("required tools") < names.index("virtualenv (Python 3.11)")


def test_security_runs_safety_only_through_its_secret():
    steps = {s.name: s for s in steps_for("security")}
    assert isinstance(steps["safety"], SecretGatedCommand) and steps["safety"].secret == "safety_api_key"
    assert "{secret_file}" in steps["safety"].gated_command


def test_every_command_gets_the_remaining_job_time():
    for job_name in ("test-py3.11", "integration", "security", "container-scan"):
        for step in steps_for(job_name):
            if isinstance(step, (ShellCommand, SetPropertyFromCommand, SecretGatedCommand)):
                if isinstance(step, StopServices):
                    continue  # teardown must run even when the time is up
                assert step.maxTime is remaining_time, (job_name, step.name)


def test_commands_do_not_log_their_environment():
    for step in steps_for("integration"):
        if isinstance(step, ShellCommand) and not isinstance(step, (StartServices, StopServices)):
            if step.name != "required tools":
                assert step.logEnviron is False, step.name


def test_the_pipeline_factory_is_one_fanout():
    (step,) = [f.buildStep() for f in make_pipeline_factory(["lint", "integration"]).steps]
    assert isinstance(step, FanOut)
    assert step.schedulerNames == [check_scheduler_name("lint"), check_scheduler_name("integration")]


# --- renderers ------------------------------------------------------------------------------------


@pytest.mark.parametrize("left, expected", [(600.0, 600), (0.5, 1), (-30.0, 1), (1800.9, 1800)])
def test_remaining_time_is_what_is_left_of_the_deadline(monkeypatch, left, expected):
    monkeypatch.setattr(factories, "time", types.SimpleNamespace(time=lambda: 5000.0))
    assert render(remaining_time, **{DEADLINE_PROPERTY: 5000.0 + left}) == expected


def test_remaining_time_without_a_deadline_is_an_hour():
    assert render(remaining_time) == 3600


def test_parse_venv():
    assert parse_venv(0, "noise\nVENV=/c/venvs/py3.11-ab12 \n", "") == {VENV_PROPERTY: "/c/venvs/py3.11-ab12"}
    assert parse_venv(1, "no venv here\n", "VENV=/x\n") == {}


def test_job_env_puts_the_venv_first_and_passes_service_urls():
    env = factories.job_env(job("integration"), "/p")
    props = {VENV_PROPERTY: "/c/venvs/v", "DATABASE_URL": "postgresql://db", "REDIS_URL": "redis://r"}
    rendered = render(env, **props)
    assert rendered["PATH"] == ["/c/venvs/v/bin", "${PATH}"] and rendered["VIRTUAL_ENV"] == "/c/venvs/v"
    assert (rendered["DATABASE_URL"], rendered["REDIS_URL"]) == ("postgresql://db", "redis://r")
    assert "DATABASE_URL" not in factories.job_env(job("lint"), "/p")


# --- factory steps through the step harness -------------------------------------------------------


def named(step_factory: _BuildStepFactory, name: str) -> _BuildStepFactory:
    """The same step under an identifier name (Buildbot's fake data API accepts only those)."""
    return _BuildStepFactory(step_factory.step_class, *step_factory.args, **{**step_factory.kwargs, "name": name})


class FactoryStepsTest(TestBuildStepMixin, TestReactorMixin, unittest.TestCase):
    def setUp(self):
        self.setup_test_reactor()
        self.patch(factories, "time", types.SimpleNamespace(time=lambda: 1000.0))
        return self.setup_test_build_step()

    def factory_step(self, job_name: str, step_name: str) -> _BuildStepFactory:
        factory = factory_for(job_name, self.mktemp())
        (found,) = [f for f in factory.steps if f.buildStep().name == step_name]
        return found

    @defer.inlineCallbacks
    def test_the_deadline_is_the_job_timeout_from_now(self):
        yield self.setup_step(self.factory_step("integration", "deadline"))
        self.expect_outcome(result=SUCCESS)
        self.expect_property(DEADLINE_PROPERTY, 1000.0 + 20 * 60)
        yield self.run_step()

    @defer.inlineCallbacks
    def test_a_command_gets_max_time_from_the_deadline_and_the_venv_on_path(self):
        yield self.setup_step(self.factory_step("test-py3.11", "pytest"))
        self.build.setProperty(DEADLINE_PROPERTY, 1000.0 + 700, "deadline")
        self.build.setProperty(VENV_PROPERTY, "/c/venvs/py3.11-x", "venv")
        self.expect_commands(
            ExpectShell(
                workdir="wkdir",
                command=list(job("test-py3.11").commands[0].argv),
                env={
                    "PATH": ["/c/venvs/py3.11-x/bin", "${PATH}"],
                    "VIRTUAL_ENV": "/c/venvs/py3.11-x",
                    "PIP_CACHE_DIR": f"{CACHE}/pip-3.11",
                    "PIP_DISABLE_PIP_VERSION_CHECK": "1",
                    "PYTHONUNBUFFERED": "1",
                },
                max_time=700,
                timeout=1200,
                log_environ=False,
            ).exit(0)
        )
        self.expect_outcome(result=SUCCESS)
        yield self.run_step()

    @defer.inlineCallbacks
    def test_the_venv_step_sets_the_venv_property(self):
        yield self.setup_step(named(self.factory_step("lint", "virtualenv (Python 3.11)"), "venv"))
        self.build.setProperty(DEADLINE_PROPERTY, 1000.0 + 60, "deadline")
        self.expect_commands(
            ExpectShell(
                workdir="wkdir",
                command=[RUNNER, "scripts/ci_venv.py", "--python", INTERPRETER, "--cache-root", CACHE,
                         "-r", "requirements-dev.txt"],
                env={"PIP_CACHE_DIR": f"{CACHE}/pip-3.11", "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
                max_time=60,
                timeout=1200,
            )
            .stdout("VENV=/var/cache/ci/venvs/py3.11-0123\n")
            .exit(0)
        )
        self.expect_outcome(result=SUCCESS)
        self.expect_property(VENV_PROPERTY, "/var/cache/ci/venvs/py3.11-0123")
        yield self.run_step()
