"""What a job runs, as argument lists and one `job.json` document: shared by the Buildbot
factories and `scripts/run_ci_checks.py`, so CI and a local run cannot drift apart.

Every command of a job goes through `ci_step.py` (a helper that comes with the
master), which starts it with the job's own environment: the document below,
never the worker's (for local workers, the master's) environment. When the
layout names a `user` (local mode, master running as root: `[workers] job_user`),
`ci_step.py` runs each command as that unprivileged user instead. In local mode
(`layout.sandbox`) every command runs in a bubblewrap sandbox (`ci_sandbox.py`)
and the caches are the ref's own: `<cache>/refs/<ref key>/` (`venvs/`,
`pip-<python>/`) for the branch, or `refs/pull/N/merge`, being built; a job of
another ref sees the default branch's cache read-only, as a seed, and no other.
This module imports no Buildbot.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Mapping
from typing import Any

from namaskah_ci import names
from namaskah_ci.helpers.ci_servers import PASSWORD_ENV as SERVICE_PASSWORD_ENV
from namaskah_ci.helpers.ci_servers import VARIABLES as SERVICE_VARIABLES
from namaskah_ci.pipeline.specs import JobSpec, StepSpec

JOB_DIR = "../.namaskah-ci"  # beside the checkout: the job's environment, secrets, TMPDIR, helpers (docker)
# every variable a service gives a job: postgres DATABASE_URL, PG*, POSTGRES_*; redis REDIS_URL, _HOST, _PORT,
# _PASSWORD (helpers/ci_servers.py's `service_variables`, in both modes)
SERVICE_ENV: dict[str, tuple[str, ...]] = dict(SERVICE_VARIABLES)
SERVICES_FILE = "services.env"  # in the job dir: local mode's service URLs (ci_services.py writes, ci_step.py reads)
PRIORITY_NICENESS = {"high": 5, "normal": 10, "low": 19}  # local mode: the master keeps a core


@dataclasses.dataclass(frozen=True)
class JobLayout:
    """Where a job's helpers, caches and directory are on its worker."""

    runner: str  # the Python that runs the helpers (the master's own in local mode; python3 in images)
    helpers_dir: str  # the helper scripts on the worker
    cache_root: str  # pip caches (one per Python version) and the shared virtualenvs
    job_dir: str = JOB_DIR
    user: str = ""  # local mode as root: the user the job's commands run as (ci_step.py drops to it); "": as is
    sandbox: bool = False  # local mode: each command in a bubblewrap sandbox, caches per ref
    default_branch: str = "main"  # its cache seeds every other ref's (read-only)
    hidden: tuple[str, ...] = ()  # never visible in the sandbox: the master's basedir, secrets, the whole cache

    def helper(self, script: str) -> str:
        return f"{self.helpers_dir}/{script}"

    def wrap(self, argv: list[str]) -> list[str]:
        return [self.runner, self.helper("ci_step.py"), "--job-dir", self.job_dir, "run", "--", *argv]


def service_env_names(job: JobSpec) -> list[str]:
    return [name for service in job.services for name in SERVICE_ENV[service]]


def job_document(
    job: JobSpec,
    layout: JobLayout,
    *,
    interpreter: str,
    base_path: str,
    worker_env: Mapping[str, str],
    revision: str = "",
    branch: str = "",
    build_url: str = "",
    nice: bool = False,
    docker_socket: bool = False,
) -> dict[str, Any]:
    """`job.json`: the environment every command of the job starts with (see ci_step.py).

    `worker_env` is the operator's (`[workers] job_env` and the worker kind's own base, e.g. the
    CA bundle of the docker images); the pipeline file's `env` goes over it. `docker_socket`: this
    build may have the Docker engine's socket (`jobs/engine_access.py`, decided on the
    master); without it a sandbox never mounts it, whatever `tools:` says."""
    env = dict(worker_env)
    env.update(
        {
            "CI": "true",
            "NAMASKAH_CI": "true",
            "NAMASKAH_CI_JOB": job.job,
            "NAMASKAH_CI_BUILDER": job.builder,
            "NAMASKAH_CI_PYTHON": job.python,
            "NAMASKAH_CI_REVISION": revision,
            "NAMASKAH_CI_BRANCH": branch,
            "NAMASKAH_CI_BUILD_URL": build_url,
            "PIP_CACHE_DIR": pip_cache(layout, job, branch),
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        }
    )
    env.update(job.environment)
    document: dict[str, Any] = {
        "builder": job.builder,
        "env": env,
        "file_env": list(job.environment),  # the file's names, in the order ci_step.py expands their ${NAME}
        "pass": service_env_names(job),
        "path": base_path,
        "interpreter": interpreter,
    }
    if job.install is not None:  # made by ci_step.py's venv step (ci_install.py) in the job's working directory
        document["install"] = job.install.to_job()
        document["working_directory"] = getattr(job, "working_directory", "")
    if nice:
        document["nice"] = PRIORITY_NICENESS[job.priority]
    if layout.user:
        document["user"] = layout.user
    if layout.sandbox:
        own, seed = ref_cache(layout, branch), ref_cache(layout, layout.default_branch)
        document["sandbox"] = {
            "cache": own,
            "seed": "" if seed == own else seed,
            "hide": sorted({*layout.hidden, layout.cache_root}),
            "tools": [tool for tool in job.tools if tool != "docker" or docker_socket],
        }
    return document


def ref_key(ref: str) -> str:
    """A directory name for a branch or ref: readable, and distinct for distinct refs (`a/b` vs `a-b`)."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "-", ref).strip(".-")[:48] or "ref"
    return f"{readable}-{hashlib.sha256(ref.encode()).hexdigest()[:12]}"


def ref_cache(layout: JobLayout, branch: str) -> str:
    """The cache a job writes: its ref's own in local mode (no branch: the default branch, as the
    build's revision then is), else the layout's whole cache (docker mode: its volume)."""
    if not layout.sandbox:
        return layout.cache_root
    return f"{layout.cache_root.rstrip('/')}/refs/{ref_key(branch or layout.default_branch)}"


def pip_cache(layout: JobLayout, job: JobSpec, branch: str = "") -> str:
    return f"{ref_cache(layout, branch)}/pip-{job.python}"


def tools_argv(layout: JobLayout, job: JobSpec) -> list[str]:
    return layout.wrap([layout.runner, layout.helper("ci_require_tools.py"), *job.tools])


def venv_argv(layout: JobLayout, job: JobSpec, interpreter: str) -> list[str]:
    argv = [layout.runner, layout.helper("ci_step.py"), "--job-dir", layout.job_dir, "venv"]
    argv += ["--python", interpreter, "--cache-root", layout.cache_root]
    for requirement in job.requirements:
        argv += ["-r", requirement]
    return argv


def own_argv(layout: JobLayout) -> list[str]:
    """As root, before the job's commands: the checkout and TMPDIR become the job user's."""
    return [layout.runner, layout.helper("ci_step.py"), "--job-dir", layout.job_dir, "own"]


def collect_reports_argv(layout: JobLayout, job: JobSpec, max_bytes: int = 0, max_files: int = 0) -> list[str]:
    """As root, after the job's commands: copy the declared reports, never through a symlink, into
    `<job dir>/reports` (the job user cannot write there), which the upload then reads; at most
    `max_bytes` and `max_files` of them together ([limits] report_bytes / report_files; 0: no limit)."""
    argv = [layout.runner, layout.helper("ci_step.py"), "--job-dir", layout.job_dir, "collect-reports"]
    if max_bytes:
        argv += ["--max-bytes", str(max_bytes)]
    if max_files:
        argv += ["--max-files", str(max_files)]
    return [*argv, "--", *(report.path for report in job.reports)]


def step_argv(layout: JobLayout, step: StepSpec) -> list[str]:
    """The step's line through ci_step.py, with its working directory and its own `env` (expanded there)."""
    argv = layout.wrap(["bash", "-e", "-o", "pipefail", "-c", step.run])
    options = ["--step", *([f"--workdir={step.working_directory}"] if step.working_directory else [])]
    options += [f"--env={name}={value}" for name, value in step.env]
    at = argv.index("run") + 1
    return [*argv[:at], *options, *argv[at:]]


def fetch_history_argv(repo_url: str) -> list[str]:
    """`history: full`: every branch and tag, beside the revision's own ancestry."""
    return ["git", "fetch", "--quiet", "--tags", repo_url, "+refs/heads/*:refs/remotes/origin/*"]


def services_argv(
    layout: JobLayout, action: str, state_dir: str, job: JobSpec | None = None, timeout: int = 60
) -> list[str]:
    """Local mode's per-build PostgreSQL/Redis (ci_services.py start|stop). Their URLs, passwords and
    all, go to `<job dir>/services.env` (0600, the worker's user: root's with a job user), where
    ci_step.py reads them for the job's commands: never to the step's log, a property or the master."""
    argv = [layout.runner, layout.helper("ci_services.py"), action, "--state-dir", state_dir]
    argv += ["--env-file", f"{layout.job_dir}/{SERVICES_FILE}"]
    if action == "start" and job is not None:
        argv += ["--timeout", str(timeout)]
        for name in job.services:
            service = job.service(name)
            argv.append(f"--{name}")
            for key in ("version", "database", "user"):
                if getattr(service, key):
                    argv += [f"--{name}-{key}", getattr(service, key)]
    return argv


def services_password_env(job: JobSpec) -> dict[str, str]:
    """The passwords the file gives, for `ci_services.py start`'s environment (never its argv, which the
    step's log shows)."""
    return {SERVICE_PASSWORD_ENV[name]: password for name, password in job.service_passwords}


def secret_files(job: JobSpec) -> dict[str, str]:
    """{secret name: file name under <job dir>/secrets/}: ci_step.py exports each as that variable."""
    return {secret: names.secret_env_var(secret) for secret in job.secrets}
