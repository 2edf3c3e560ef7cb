"""Build factories: one per job of the table, plus the `pipeline` fan-out.

A check build is: checkout, required-tools check, the job's virtualenv (cached
in the builder directory, rebuilt when the requirement files change), per-build
services when the job has some, the job's commands, optional secret-gated
uploads, published reports and service teardown. Every command gets at most
what is left of the job's timeout.
"""

from __future__ import annotations

import time

from buildbot.plugins import steps, util
from buildbot.process.factory import BuildFactory
from buildbot.steps.trigger import Trigger

from namaskah_ci.jobs import ANALYSIS, CHECK, LONG, REPORTS_DIR, Job, cpu_priority
from namaskah_ci.settings import Settings
from namaskah_ci.steps import hide_skipped
from namaskah_ci.steps.fanout import FanOut
from namaskah_ci.steps.gated import SECRET_FILE_PLACEHOLDER, SecretGatedCommand
from namaskah_ci.steps.reports import PublishReports, reports_url
from namaskah_ci.steps.services import StartServices, StopServices

# Local workers run their commands on the master's own CPUs. At equal priority eight parallel checks
# left the master's reactor a fraction of a core: step starts, checkouts and REST answers waited behind
# pytest and mypy (bench/pipeline_bench.py). Checks run at CHECK_NICENESS; jobs outside the pipeline's
# verdict (codeql on every push to main) at ANALYSIS_NICENESS, so they take only CPU the checks leave.
# The pipeline's longest checks (Job.long_job) run at LONG_JOB_NICENESS: with fair shares they were
# starved by the shorter checks and ended last, at twice their time alone (longest job first).
LONG_JOB_NICENESS = 5
CHECK_NICENESS = 10
ANALYSIS_NICENESS = 19
NICENESS = {LONG: LONG_JOB_NICENESS, CHECK: CHECK_NICENESS, ANALYSIS: ANALYSIS_NICENESS}
VENV_PROPERTY = "venv"  # the job's virtualenv, shared by jobs with the same Python and requirements
DEADLINE_PROPERTY = "job_deadline"


def check_scheduler_name(job_name: str) -> str:
    return f"check-{job_name}"


def analysis_scheduler_name(job_name: str) -> str:
    """The Triggerable the pipeline starts, once its checks ended, for a job outside the verdict."""
    return f"analysis-{job_name}"


@util.renderer
def remaining_time(props) -> int:
    """Seconds left before the job's deadline (at least 1): the maxTime of each command."""
    deadline = props.getProperty(DEADLINE_PROPERTY)
    if deadline is None:
        return 3600
    return max(1, int(deadline - time.time()))


def _deadline(minutes: int):
    @util.renderer
    def deadline(props) -> float:
        return time.time() + minutes * 60

    return deadline


def parse_venv(rc: int, stdout: str, stderr: str) -> dict[str, str]:
    for line in stdout.splitlines():
        if line.startswith("VENV="):
            return {VENV_PROPERTY: line[len("VENV="):].strip()}
    return {}


def job_env(job: Job, pip_cache: str) -> dict:
    env: dict = {
        "PATH": [util.Interpolate(f"%(prop:{VENV_PROPERTY})s/bin"), "${PATH}"],
        "VIRTUAL_ENV": util.Interpolate(f"%(prop:{VENV_PROPERTY})s"),
        "PIP_CACHE_DIR": pip_cache,
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PYTHONUNBUFFERED": "1",
    }
    if "postgres" in job.services:
        env["DATABASE_URL"] = util.Interpolate("%(prop:DATABASE_URL)s")
    if "redis" in job.services:
        env["REDIS_URL"] = util.Interpolate("%(prop:REDIS_URL)s")
    return env


def nice_prefix(job: Job) -> list[str]:
    """`nice -n N`: the checks below the master (the longest first), analysis jobs below the checks."""
    return ["nice", "-n", str(NICENESS[cpu_priority(job)])]


def make_check_factory(
    job: Job,
    settings: Settings,
    runner: str,
    interpreter: str,
    cache_root: str,
    require_tools: tuple[str, ...] = (),
    services_in_worker: bool = False,
    nice_commands: bool = False,
) -> BuildFactory:
    """The steps of one check job: `runner` runs helper scripts, `interpreter` creates the virtualenv.

    `nice_commands` (local mode): the virtualenv step and the job's commands run under `nice_prefix(job)`."""
    prefix = nice_prefix(job) if nice_commands else []
    pip_cache = f"{cache_root}/pip-{job.python}"
    env = job_env(job, pip_cache)
    timing = {"maxTime": remaining_time, "timeout": 20 * 60}
    factory = BuildFactory()
    factory.addStep(
        steps.SetProperty(
            name="deadline",
            property=DEADLINE_PROPERTY,
            value=_deadline(job.timeout_minutes),
            hideStepIf=True,
        )
    )
    factory.addStep(
        steps.Git(
            repourl=settings.repo_url,
            mode="full",
            method="fresh",
            haltOnFailure=True,
            progress=False,
        )
    )
    factory.addStep(steps.MakeDirectory(dir=util.Interpolate(f"%(prop:builddir)s/build/{REPORTS_DIR}"), hideStepIf=True))
    if job.tools:
        factory.addStep(
            steps.ShellCommand(
                name="required tools",
                description="checking tools",
                descriptionDone=f"tools: {', '.join(job.tools)}",
                command=[*(require_tools or (runner, "scripts/ci_require_tools.py")), *job.tools],
                haltOnFailure=True,
                **timing,
            )
        )
    venv_cmd = [runner, "scripts/ci_venv.py", "--python", interpreter, "--cache-root", cache_root]
    for requirement in job.requirements:
        venv_cmd += ["-r", requirement]
    factory.addStep(
        steps.SetPropertyFromCommand(
            name=f"virtualenv (Python {job.python})",
            description="preparing virtualenv",
            descriptionDone=f"virtualenv (Python {job.python})",
            command=prefix + venv_cmd,
            extract_fn=parse_venv,
            env={"PIP_CACHE_DIR": pip_cache, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
            haltOnFailure=True,
            **timing,
        )
    )
    if job.services and not services_in_worker:  # docker mode: the worker's service containers
        factory.addStep(StopServices(name="reap stale services", env=env, flunkOnFailure=False, hideStepIf=True))
        factory.addStep(StartServices(job.services, env=env, **timing))
    for command in job.commands:
        factory.addStep(
            steps.ShellCommand(
                name=command.name,
                description=f"running {command.name}",
                descriptionDone=command.name,
                command=prefix + list(command.argv),
                env=env,
                haltOnFailure=command.halt_on_failure,
                logEnviron=False,
                **timing,
            )
        )
    if job.codecov:
        factory.addStep(
            SecretGatedCommand(
                "codecov_token",
                ["python", "scripts/ci_codecov.py", "--token-file", SECRET_FILE_PLACEHOLDER,
                 "--file", f"{REPORTS_DIR}/coverage.xml", "--flag", job.name],
                name="codecov",
                env=env,
                logEnviron=False,
                flunkOnFailure=False,
                warnOnFailure=True,
                **timing,
            )
        )
    if job.safety:
        factory.addStep(
            SecretGatedCommand(
                "safety_api_key",
                ["python", "scripts/ci_safety.py", "--key-file", SECRET_FILE_PLACEHOLDER,
                 "-r", "requirements.txt", "--output", f"{REPORTS_DIR}/safety.json"],
                name="safety",
                env=env,
                logEnviron=False,
                **timing,
            )
        )
    if job.reports:
        factory.addStep(
            PublishReports(
                reports_root=util.Interpolate(
                    f"{settings.basedir}/reports/%(prop:buildername)s/%(prop:buildnumber)s"
                ),
                base_url=reports_url(settings.buildbot_url),
                reports=job.reports,
            )
        )
    if job.services and not services_in_worker:
        factory.addStep(StopServices(env=env, alwaysRun=True, flunkOnFailure=True))
    return factory


def _on_branch(branch: str):
    def on_branch(step) -> bool:
        return step.build.getProperty("branch") == branch

    return on_branch


def make_pipeline_factory(
    check_names: list[str], deploy_gate=None, analysis_names: tuple[str, ...] = (), analysis_branch: str = "main"
) -> BuildFactory:
    """Fan out to every check in parallel; the build's result is the worst of them.

    Then, on `analysis_branch`, start the jobs outside the verdict (`analysis_names`: codeql) without
    waiting for them: started beside the checks they took CPU from them and delayed the verdict
    (bench/pipeline_bench.py). `deploy_gate` (deploy.make_deploy_gate) then triggers the branch's
    deploy when every required check passed.
    """
    factory = BuildFactory()
    factory.addStep(FanOut(schedulerNames=[check_scheduler_name(name) for name in check_names]))
    if analysis_names:
        factory.addStep(
            Trigger(
                name="analysis",
                description=f"starting {', '.join(analysis_names)}",
                descriptionDone=f"started {', '.join(analysis_names)}",
                schedulerNames=[analysis_scheduler_name(name) for name in analysis_names],
                waitForFinish=False,
                updateSourceStamp=False,
                alwaysRun=True,
                doStepIf=_on_branch(analysis_branch),
                hideStepIf=hide_skipped,
            )
        )
    if deploy_gate is not None:
        factory.addStep(deploy_gate)
    return factory
