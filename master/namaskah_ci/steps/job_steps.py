"""The steps of one job build, made from its definition at the build's revision.

Every job builder has the same two-step factory (`factories.make_job_factory`):
`LoadJob` reads the job's definition (from the pipeline's trigger, or from the
pipeline file at the revision) and then adds what `job_steps()` returns:

    checkout (pinned) → [all branches and tags] → [job user] → [report directories] → [required tools]
    → [virtualenv] → [services] → the file's steps → [collect reports] → [publish reports]
    → [stop services] → cleanup

`JobSetup` is what the worker mode decides (where helpers live, which Python
creates virtualenvs, the base environment); it is plain, comparable data.

With a job user (`setup.layout.user`: local mode, master running as root) the
job's commands run as that unprivileged user, and nothing the job could have
written is later trusted by root: the checkout is a fresh copy of a root-only
clone (`method="copy"`: root's git never runs in a tree the job owned), which
`job user` then hands to the user with the job's TMPDIR; `report directories`
runs after it, as a job command (as the user: a committed symlink such as
`reports -> /` leads nowhere the user cannot write anyway); `collect reports`
copies the declared reports as root without following a symlink into the job
directory, where the upload reads them (a report symlinked to a secret file
is skipped, never published). Reports are bounded, `[limits] report_bytes`
and `report_files` for a job's reports together: in the collect step (bytes
really read) and in the upload (the master never stores more).
"""

from __future__ import annotations

import dataclasses
import posixpath
import time
from collections.abc import Generator
from typing import Any

from buildbot.plugins import util
from twisted.internet import defer

from namaskah_ci import names
from namaskah_ci.jobs import commands as job_commands
from namaskah_ci.jobs import engine_access
from namaskah_ci.jobs.commands import JobLayout
from namaskah_ci.pipeline.specs import JobSpec, StepSpec
from namaskah_ci.steps.job import CleanupJob, JobStep, PinnedGit
from namaskah_ci.steps.reports import PublishReports
from namaskah_ci.steps.results import FAILURE, SUCCESS
from namaskah_ci.steps.services import STATE_DIR, StartServices, StopServices

NO_OUTPUT_TIMEOUT = 20 * 60  # seconds a command may print nothing
CHECKOUT = "build"  # the build's workdir, in the builder directory


@dataclasses.dataclass(frozen=True)
class JobSetup:
    """How jobs run in this worker mode."""

    mode: str  # local | docker
    layout: JobLayout
    repo_url: str
    base_path: str
    worker_env: tuple[tuple[str, str], ...] = ()  # the operator's [workers] job_env (and the images' CA bundle)
    interpreters: tuple[tuple[str, str], ...] = ()  # local mode: version -> interpreter name
    app_base_image: str = ""  # APP_BASE_IMAGE for jobs with `tools: [docker]`
    docker_ca_bundle: str = ""  # docker mode: PIP_CERT_FILE for jobs with `tools: [docker]`
    docker_socket_branches: tuple[str, ...] = ()  # whose `tools: [docker]` gets the engine (engine_access.py)
    nice: bool = False  # local mode: commands run under nice (job priority)
    transfer_helpers: bool = False  # docker mode: the helpers are copied into each build
    services_in_worker: bool = False  # docker mode: service containers, not StartServices steps
    coverage_min: int = 0
    reports_root: str = ""
    reports_url: str = ""
    report_bytes: int = 0  # [limits] report_bytes: a job's reports together (0: no limit)
    report_files: int = 0  # [limits] report_files: files (and directories) in them together

    def untrusted(self) -> JobSetup:
        """The setup of a fork's pull request: caches apart from everyone else's (local mode: under
        `<cache>/untrusted`; docker mode mounts another volume, workers/docker/config.py)."""
        if self.mode == "docker":
            return self
        return dataclasses.replace(
            self, layout=dataclasses.replace(self.layout, cache_root=f"{self.layout.cache_root.rstrip('/')}/untrusted")
        )

    @property
    def job_user(self) -> str:
        """The user the job's commands run as ("": the worker's own user)."""
        return self.layout.user

    def engine_refusal(self, branch: str | None, fork: bool) -> str:
        """'' when a `tools: [docker]` build of `branch` gets the engine's socket (docker mode: in its container;
        local mode: in its sandbox), else why not, naming [workers] docker_socket_branches."""
        return engine_access.refusal(self.docker_socket_branches, branch, fork)

    def env_for(self, job: JobSpec) -> dict[str, str]:
        env = dict(self.worker_env)
        if "docker" in job.tools:
            if self.app_base_image:
                env["APP_BASE_IMAGE"] = self.app_base_image
            if self.docker_ca_bundle:
                env["PIP_CERT_FILE"] = self.docker_ca_bundle
        return env


@util.renderer
def remaining_time(props: Any) -> int:
    """Seconds left before the job's deadline (at least 1): the maxTime of each command."""
    deadline = props.getProperty(names.PROP_DEADLINE)
    if deadline is None:
        return 3600
    return max(1, int(deadline - time.time()))


def deadline_after(minutes: int) -> float:
    return time.time() + minutes * 60


class RequiredTools(JobStep):
    """`required tools`: ci_require_tools.py names any of the job's `tools:` missing on the worker. A
    `tools: [docker]` build that did not get the engine's socket (`jobs/engine_access.py`: a
    branch outside [workers] docker_socket_branches, a fork's pull request; docker mode: its container,
    local mode: its sandbox, has no socket) ends FAILURE here, before anything runs, its summary and its
    `refused` log naming why and the setting."""

    def __init__(self, docker_branches: tuple[str, ...], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.docker_branches = docker_branches
        self.refused = ""

    @defer.inlineCallbacks
    def run(self) -> Generator[Any, Any, int]:
        branch, fork = self.getProperty("branch"), bool(self.getProperty(names.PROP_PR_FORK))
        reason = engine_access.refusal(self.docker_branches, branch, fork)
        if reason:
            self.refused = engine_access.summary(self.docker_branches, branch, fork)
            yield self.addCompleteLog("refused", reason + "\n")
            return FAILURE
        result: int = yield super().run()
        return result

    def getResultSummary(self) -> dict[str, str]:
        if self.refused:
            return {"step": self.refused, "build": f"{self.name}: {self.refused}"}
        summary: dict[str, str] = super().getResultSummary()
        return summary


def _job_step(
    job: JobSpec, setup: JobSetup, step: StepSpec, missing_secrets: set[str], timing: dict[str, Any]
) -> JobStep:
    skip = ""
    if step.only_with_secret and step.only_with_secret in missing_secrets:
        skip = f"skipped: no {step.only_with_secret} secret"
    flags: dict[str, bool] = {"haltOnFailure": True}
    if step.continue_on_failure:
        flags = {"haltOnFailure": False}
    if step.allow_failure:
        flags = {"haltOnFailure": False, "flunkOnFailure": False, "warnOnFailure": True}
    return JobStep(
        skip_reason=skip,
        name=step.name,
        description=f"running {step.name}",
        descriptionDone=step.name,
        command=job_commands.step_argv(setup.layout, step),  # service URLs: ci_step.py reads them on the worker
        **flags,
        **timing,
    )


def job_steps(job: JobSpec, setup: JobSetup, interpreter: str, missing_secrets: set[str] | None = None) -> list[Any]:
    """The steps after LoadJob, as step instances."""
    missing_secrets = missing_secrets or set()
    layout = setup.layout
    user = setup.job_user
    timing: dict[str, Any] = {"maxTime": remaining_time, "timeout": NO_OUTPUT_TIMEOUT, "logEnviron": False}
    method = "copy" if user else "fresh"  # copy: root's git works in `source`, which the job never owns
    result: list[Any] = [
        PinnedGit(repourl=setup.repo_url, mode="full", method=method, haltOnFailure=True, progress=False),
    ]
    if job.history == "full":
        result.append(
            JobStep(
                name="fetch history",
                descriptionDone="all branches and tags",
                command=job_commands.fetch_history_argv(setup.repo_url),
                haltOnFailure=True,
                **timing,
            )
        )
    if user:
        result.append(
            JobStep(
                name="job user",
                description=f"handing the checkout to {user}",
                descriptionDone=f"runs as {user}",
                command=job_commands.own_argv(layout),
                haltOnFailure=True,
                **timing,
            )
        )
    report_dirs = sorted({posixpath.dirname(report.path) for report in job.reports} - {""})
    if report_dirs:  # the declared reports' directories exist before the steps write into them: made by
        # a job command (the job user's), never by root through a path the branch controls
        result.append(
            JobStep(
                name="report directories",
                command=layout.wrap(["mkdir", "-p", "--", *report_dirs]),
                haltOnFailure=True,
                hideStepIf=lambda results, step: results == SUCCESS,
                **timing,
            )
        )
    if job.tools:
        check: dict[str, Any] = dict(
            name="required tools",
            description="checking tools",
            descriptionDone=f"tools: {', '.join(job.tools)}",
            command=job_commands.tools_argv(layout, job),
            haltOnFailure=True,
            **timing,
        )
        if "docker" in job.tools:  # the engine's socket (root on its host): not every build's, in either mode
            result.append(RequiredTools(docker_branches=setup.docker_socket_branches, **check))
        else:
            result.append(JobStep(**check))
    if job.requirements or job.install:
        result.append(
            JobStep(
                name=f"virtualenv (Python {job.python})",
                description="preparing virtualenv",
                descriptionDone=f"virtualenv (Python {job.python})",
                command=job_commands.venv_argv(layout, job, interpreter),
                haltOnFailure=True,
                **timing,
            )
        )
    local_services = bool(job.services) and not setup.services_in_worker
    if local_services:
        stop = job_commands.services_argv(layout, "stop", STATE_DIR)
        result.append(StopServices(stop, name="reap stale services", flunkOnFailure=False, hideStepIf=True))
        start = job_commands.services_argv(layout, "start", STATE_DIR, job)
        result.append(StartServices(job.services, start, env=job_commands.services_password_env(job), **timing))
    result += [_job_step(job, setup, step, missing_secrets, timing) for step in job.steps]
    if job.reports:
        where: dict[str, str] = {}
        if user:
            result.append(
                JobStep(
                    name="collect reports",
                    command=job_commands.collect_reports_argv(layout, job, setup.report_bytes, setup.report_files),
                    alwaysRun=True,
                    flunkOnFailure=False,
                    warnOnFailure=True,
                    hideStepIf=lambda results, step: results == SUCCESS,
                    timeout=NO_OUTPUT_TIMEOUT,
                    logEnviron=False,
                )
            )
            where["workdir"] = posixpath.normpath(posixpath.join(CHECKOUT, layout.job_dir, "reports"))
        result.append(
            PublishReports(
                reports_root=util.Interpolate(f"{setup.reports_root}/%(prop:buildername)s/%(prop:buildnumber)s"),
                base_url=setup.reports_url,
                reports=job.reports,
                coverage_min=setup.coverage_min,
                max_bytes=setup.report_bytes,
                max_files=setup.report_files,
                **where,
            )
        )
    if local_services:
        stop = job_commands.services_argv(layout, "stop", STATE_DIR)
        result.append(StopServices(stop, alwaysRun=True, flunkOnFailure=True))
    result.append(CleanupJob(layout.job_dir))
    return result
