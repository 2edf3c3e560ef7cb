"""Docker mode configuration: which image, volumes and environment each check builder's worker gets.

`make_docker_workers(settings, builder_names)` gives every check builder a
latent worker per Docker host (`docker_workers.py`) and the other builders
(the pipeline, deploys) LocalWorkers; `make_docker_plan(settings)` tells the
factories how jobs run in a container (the image's python3, caches under
`/cache`, services from the worker). Pure functions of the settings: no
Docker call happens here.
"""

from __future__ import annotations

import os
import re

from buildbot.plugins import worker

from namaskah_ci import docker_services as ds
from namaskah_ci.docker_workers import NamaskahDockerWorker, ServiceDockerWorker
from namaskah_ci.jobs import ANALYSIS, CHECK, LONG, Job, cpu_priority, make_jobs
from namaskah_ci.secrets import WORKER_PASSWORD_SECRET, secret_available, worker_password
from namaskah_ci.settings import Settings
from namaskah_ci.workers import WorkerPlan, docker_worker_name, worker_name

CACHE_MOUNT = "/cache"  # the named cache volume inside every worker container
DEFAULT_IMAGES = {
    "3.9": "namaskah-ci/worker:py3.9",
    "3.11": "namaskah-ci/worker:py3.11",
    "tools": "namaskah-ci/tools:latest",
    "postgres": "namaskah-ci/postgres:15",
    "redis": "namaskah-ci/redis:7",
    # the integration tests also start servers of their own (scripts/ci_services.py): binaries included
    "integration": "namaskah-ci/worker:py3.11-servers",
}
DOCKER_SOCKET = "/var/run/docker.sock"
CA_BUNDLE = "/etc/namaskah/ca/ca-bundle.crt"  # in every namaskah-ci image (workers/python/Dockerfile)
# security scanners (bandit, pip-audit, semgrep) are preinstalled there; jobs with `tools` go there too
TOOLS_IMAGE_JOBS = ("security", "codeql")


def docker_hosts(settings: Settings) -> list[str]:
    return [settings.workers.docker_host, *settings.workers.extra_docker_hosts]


def image_for(settings: Settings, job: Job) -> str:
    """The image a job runs in: `images[<job name>]`; the tools image for the security jobs; else its Python's."""
    images = {**DEFAULT_IMAGES, **settings.workers.images}
    if job.name in images:
        return images[job.name]
    if job.tools or job.name in TOOLS_IMAGE_JOBS:
        return images["tools"]
    return images[job.python]


def cache_volume(python: str) -> str:
    return f"namaskah-ci-cache-py{python}"


def is_local_path(url: str) -> bool:
    return "://" not in url and not re.match(r"^[\w.-]+@[\w.-]+:", url) and os.path.isabs(url)


def make_docker_plan(settings: Settings) -> WorkerPlan:
    """Helper scripts and virtualenvs use the image's python3; caches live in the mounted volume."""
    return WorkerPlan(
        runner="python3",
        cache_root=CACHE_MOUNT,
        mode="docker",
        interpreter="python3",
        require_tools=("namaskah-require-tools",),
        services_in_worker=True,
        hosts=len(docker_hosts(settings)),
    )


def _volumes(settings: Settings, job: Job) -> list[str]:
    volumes = [f"{cache_volume(job.python)}:{CACHE_MOUNT}"]
    if is_local_path(settings.repo_url):
        volumes.append(f"{settings.repo_url}:{settings.repo_url}:ro")  # a local repository, cloned from inside
    if "docker" in job.tools:
        volumes.append(f"{DOCKER_SOCKET}:{DOCKER_SOCKET}")  # container-scan builds images on the engine
    return volumes


# CPU weight of a job's container against the others on the engine (jobs.cpu_priority; local mode's
# `nice` levels as cgroup shares): the longest checks first, analysis jobs after the checks
LONG_JOB_CPU_SHARES = 3072
CHECK_CPU_SHARES = 1024
ANALYSIS_CPU_SHARES = 128
CPU_SHARES = {LONG: LONG_JOB_CPU_SHARES, CHECK: CHECK_CPU_SHARES, ANALYSIS: ANALYSIS_CPU_SHARES}


def cpu_shares(job: Job) -> int:
    return CPU_SHARES[cpu_priority(job)]


def make_job_worker(settings: Settings, job: Job, host: str, host_index: int = 0):
    """The latent worker of one check builder on one Docker host."""
    images = {**DEFAULT_IMAGES, **settings.workers.images}
    extra_env = {"NAMASKAH_CI_JOB": job.name}
    if "docker" in job.tools:
        # the bundle this container trusts goes into the app build's context (ci_container_scan.py)
        extra_env["PIP_CERT_FILE"] = CA_BUNDLE
        if settings.workers.app_base_image:
            extra_env["APP_BASE_IMAGE"] = settings.workers.app_base_image
    kwargs = dict(
        docker_host=host,
        image=image_for(settings, job),
        version="auto",  # negotiate the API version: Debian's engine is older than docker-py's default
        masterFQDN=f"{settings.workers.master_host}:{settings.workers.port}",
        hostconfig={"network_mode": "host", "init": False, "cpu_shares": cpu_shares(job)},
        volumes=_volumes(settings, job),
        build_wait_timeout=0,
        max_builds=1,
        instance=settings.workers.instance_name or None,
        extra_env=extra_env,
        cache_volume=cache_volume(job.python),
    )
    name = docker_worker_name(job.name, host_index)
    # the `worker_password` secret when configured, else Buildbot's random per-start password
    password = worker_password() if secret_available(settings, WORKER_PASSWORD_SECRET) else None
    if job.services:
        return ServiceDockerWorker(
            name,
            password,
            service_kinds=job.services,
            service_images={kind: images[kind] for kind in ds.SERVICE_NAMES},
            network_mode=settings.workers.network_mode,
            ready_timeout=settings.workers.service_ready_timeout,
            local_ports=host_index == 0 and ds.is_local_engine(host),
            **kwargs,
        )
    return NamaskahDockerWorker(name, password, **kwargs)


def make_docker_workers(settings: Settings, builder_names: list[str]) -> list:
    """Check builders get a latent worker per Docker host; other builders (the pipeline) a LocalWorker."""
    jobs = {job.name: job for job in make_jobs(coverage_min=settings.checks.coverage_min)}
    result: list = []
    for name in builder_names:
        job = jobs.get(name)
        if job is None:
            result.append(worker.LocalWorker(worker_name(name)))
            continue
        for index, host in enumerate(docker_hosts(settings)):
            result.append(make_job_worker(settings, job, host, index))
    return result
