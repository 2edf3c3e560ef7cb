"""Local workers share the master's CPUs: their virtualenv step and job commands run under `nice`
(checks at 10, jobs outside the pipeline's verdict at 19) so the master stays responsive; docker
mode and a plain factory run the commands as the job table has them."""

from __future__ import annotations

from buildbot.steps.shell import SetPropertyFromCommand, ShellCommand

from namaskah_ci.factories import ANALYSIS_NICENESS, CHECK_NICENESS, LONG_JOB_NICENESS, make_check_factory
from namaskah_ci.jobs import make_jobs
from namaskah_ci.settings import load_settings
from namaskah_ci.workers import make_plan


def settings(**env):
    return load_settings({"PIPELINE_MASTER_BASEDIR": "/tmp/ci-nice/master", "PIPELINE_REPO_URL": "/srv/app.git", **env})


def commands(job_name: str, nice: bool) -> dict[str, list]:
    (job,) = [j for j in make_jobs() if j.name == job_name]
    factory = make_check_factory(job, settings(), runner="/py", interpreter="/usr/bin/python3.11",
                                 cache_root="/cache", nice_commands=nice)
    steps = [f.buildStep() for f in factory.steps]
    return {s.name: s.command for s in steps if isinstance(s, (ShellCommand, SetPropertyFromCommand))}


def test_local_mode_plans_niced_commands():
    assert make_plan(settings()).nice_commands is True


def test_checks_run_at_check_niceness_and_analysis_below_them():
    test = commands("test-py3.11", nice=True)
    assert test["pytest"][:3] == ["nice", "-n", str(CHECK_NICENESS)] and test["pytest"][3:6] == ["python", "-m", "pytest"]
    assert test["virtualenv (Python 3.11)"][:4] == ["nice", "-n", str(CHECK_NICENESS), "/py"]
    codeql = commands("codeql", nice=True)
    assert codeql["static analysis"][:3] == ["nice", "-n", str(ANALYSIS_NICENESS)]
    assert CHECK_NICENESS < ANALYSIS_NICENESS


def test_without_nice_the_commands_are_the_job_tables():
    assert commands("test-py3.11", nice=False)["pytest"][:3] == ["python", "-m", "pytest"]


def test_the_longest_checks_go_first():
    assert [j.name for j in make_jobs() if j.long_job] == ["lint", "integration"]
    assert commands("integration", nice=True)["integration tests"][:3] == ["nice", "-n", str(LONG_JOB_NICENESS)]
    assert commands("lint", nice=True)["mypy"][:3] == ["nice", "-n", str(LONG_JOB_NICENESS)]
    assert commands("test-py3.9", nice=True)["pytest"][:3] == ["nice", "-n", str(CHECK_NICENESS)]
    assert LONG_JOB_NICENESS < CHECK_NICENESS < ANALYSIS_NICENESS
