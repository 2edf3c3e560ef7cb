"""Docker mode configuration: which image, volumes and services each job builder's worker gets.

`make_docker_workers(settings, builder_names, registry)` gives every job
builder a latent worker per Docker host (`workers/docker/service_worker.py`) and the other
builders (the pipeline, deploys) LocalWorkers. A builder's image (its job's
Python, or the tools image for jobs with `tools`), volumes, CPU share and
service containers are rendered per build from the job's definition at the
build's revision. `make_docker_plan(settings)` tells the job builds how jobs
run in a container (the image's python3, helpers copied in, caches under
`/cache`, services from the worker). Each ref being built gets a cache volume
of its own, seeded from the default branch's (`workers/docker/caches.py`); a fork's
pull request's is never seeded. Only builds of `[workers] docker_socket_branches`
(default: the deploy branches and the default branch) get the Docker engine's
socket for `tools: [docker]`, never a fork's pull request
(`jobs/engine_access.py`; the job's `required tools` step fails the
others naming the setting). Job containers run without
CAP_NET_RAW: with the host's network they could otherwise capture the host's
loopback traffic (other builds' worker connections). Pure functions of the
settings: no Docker call happens here.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Any

from buildbot.interfaces import IRenderable
from buildbot.plugins import worker
from buildbot.util import ComparableMixin
from twisted.internet import defer
from zope.interface import implementer

from namaskah_ci import names
from namaskah_ci.jobs import engine_access
from namaskah_ci.jobs.images import VERSION_KEY, image_from
from namaskah_ci.pipeline.registry import BuilderEntry, Registry
from namaskah_ci.secrets import secret_available, worker_password
from namaskah_ci.settings import Settings
from namaskah_ci.workers.docker import caches as docker_caches
from namaskah_ci.workers.docker import service_specs
from namaskah_ci.workers.docker import services as ds
from namaskah_ci.workers.docker.service_worker import ServiceDockerWorker
from namaskah_ci.workers.plan import WorkerPlan, builder_slots

CACHE_MOUNT = docker_caches.CACHE_MOUNT  # the build's cache volume inside every worker container
UNTRUSTED_SUFFIX = docker_caches.UNTRUSTED_SUFFIX  # ends the cache volume names of forks' pull requests
HELPERS_MOUNT = "../.namaskah-ci/helpers"  # the helpers are copied into each build's job directory
DEFAULT_IMAGES = {
    "3.9": "namaskah-ci/worker:py3.9",
    "3.11": "namaskah-ci/worker:py3.11",
    "tools": "namaskah-ci/tools:latest",
    "postgres": "namaskah-ci/postgres:15",
    "redis": "namaskah-ci/redis:7",
    # the reference service's integration tests also start servers of their own: binaries included
    # (a job named `integration` runs there unless [workers] images maps it elsewhere)
    "integration": "namaskah-ci/worker:py3.11-servers",
}
DOCKER_SOCKET = "/var/run/docker.sock"
CA_BUNDLE = "/etc/namaskah/ca/ca-bundle.crt"  # in every namaskah-ci image (workers/python/Dockerfile)
# what every job's environment gets in these images: the CA bundle they trust (the host's, copied in)
IMAGE_ENV = (
    ("GIT_SSL_CAINFO", CA_BUNDLE),
    ("PIP_CERT", CA_BUNDLE),
    ("REQUESTS_CA_BUNDLE", CA_BUNDLE),
    ("SSL_CERT_FILE", CA_BUNDLE),
)


def docker_hosts(settings: Settings) -> list[str]:
    return [settings.workers.docker_host, *settings.workers.extra_docker_hosts]


def images_of(settings: Settings) -> dict[str, str]:
    return {**DEFAULT_IMAGES, **settings.workers.images}


def image_for(settings: Settings, builder: str, job: str, python: str, tools: tuple[str, ...]) -> str:
    """`images[<builder>]` or `images[<job>]`; the tools image for jobs with `tools`; else its Python's."""
    return image_from(images_of(settings), builder, job, python, tools)


def cache_volume(python: str) -> str:
    """The default branch's cache volume of a Python (each other ref's: `cache_plan`)."""
    return docker_caches.default_volume(python)


def cache_plan(settings: Settings, python: str, branch: str | None, fork: bool) -> docker_caches.CachePlan:
    return docker_caches.plan_for(python, branch, settings.repo.default_branch, fork)


def is_local_path(url: str) -> bool:
    return "://" not in url and not re.match(r"^[\w.-]+@[\w.-]+:", url) and os.path.isabs(url)


def make_docker_plan(settings: Settings) -> WorkerPlan:
    """Helpers run with the image's python3 from the build's job directory; caches in the volume."""
    return WorkerPlan(
        runner="python3",
        cache_root=CACHE_MOUNT,
        helpers_dir=HELPERS_MOUNT,
        mode="docker",
        transfer_helpers=True,
        services_in_worker=True,
        hosts=len(docker_hosts(settings)),
        slots=builder_slots(settings),
        base_env=IMAGE_ENV,
        known_pythons=tuple(sorted(key for key in images_of(settings) if VERSION_KEY.match(key))),
        docker_socket_branches=engine_access.allowed_branches(settings),
    )


# CPU weight of a job's container against the others on the engine (the job's `priority`; local mode's
# `nice` levels as cgroup shares): the longest checks first, analysis jobs after the checks
CPU_SHARES = {"high": 3072, "normal": 1024, "low": 128}
WORKER_PASSWORD_SECRET = worker_password()  # one object: a Secret compares by identity (reconfigurations)


@dataclasses.dataclass(frozen=True)
class _JobValues:
    """What the worker of a builder needs from the job at the build's revision (`namaskah_job`),
    falling back to the builder's latest known definition (a build started without one)."""

    settings: Settings
    entry: BuilderEntry

    def job(self, props: Any) -> dict[str, Any]:
        given = props.getProperty(names.PROP_JOB)
        if isinstance(given, dict) and given.get("builder") == self.entry.builder:
            return given
        return dataclasses.asdict(self.entry)

    def image(self, props: Any) -> str:
        job = self.job(props)
        return image_for(self.settings, job["builder"], job["job"], job["python"], tuple(job.get("tools", ())))

    def volumes(self, props: Any) -> list[str]:
        job = self.job(props)
        volumes = [f"{self.cache(props).volume}:{CACHE_MOUNT}"]
        url = self.settings.repo_url
        if is_local_path(url):
            volumes.append(f"{url}:{url}:ro")  # a local repository, cloned from inside
        if "docker" in job.get("tools", ()) and not self.socket_refusal(props):
            volumes.append(f"{DOCKER_SOCKET}:{DOCKER_SOCKET}")  # container-scan builds images on the engine
        return volumes

    def socket_refusal(self, props: Any) -> str:
        """Why this build does not get the engine's socket ("": it does); a fork's PR never does."""
        fork = bool(props.getProperty(names.PROP_PR_FORK))
        allowed = engine_access.allowed_branches(self.settings)
        return engine_access.refusal(allowed, props.getProperty("branch"), fork)

    def hostconfig(self, props: Any) -> dict[str, Any]:
        shares = CPU_SHARES.get(self.job(props).get("priority", "normal"), CPU_SHARES["normal"])
        # no raw sockets: on the host's network they would capture every connection on it
        return {"network_mode": "host", "init": False, "cpu_shares": shares, "cap_drop": ["NET_RAW"]}

    def cache(self, props: Any) -> docker_caches.CachePlan:
        """The build's cache volume: its ref's own (the default branch's for it), see workers/docker/caches.py."""
        fork = bool(props.getProperty(names.PROP_PR_FORK))
        return cache_plan(self.settings, self.job(props)["python"], props.getProperty("branch"), fork)

    def services(self, props: Any) -> tuple[dict[str, Any], ...]:
        """Each service's settings ({name, version, database, user, password_given}; a name alone
        without them): the worker reads a password the file gives from the file (service_worker.py)."""
        job = self.job(props)
        chosen = {each["name"]: each for each in job.get("service_settings", ())}
        return tuple(dict(chosen.get(name, {"name": name})) for name in job.get("services", ()))


@implementer(IRenderable)
class JobValue(ComparableMixin):
    """One of `_JobValues`' values as a renderable; comparable, so a reconfiguration (one happens
    whenever a pipeline brings a new job) leaves the workers whose configuration is unchanged alone."""

    compare_attrs = ("values", "what")

    def __init__(self, values: _JobValues, what: str) -> None:
        self.values = values
        self.what = what

    def getRenderingFor(self, props: Any) -> defer.Deferred[Any]:
        return defer.succeed(getattr(self.values, self.what)(props))

    def __repr__(self) -> str:
        return f"JobValue({self.values.entry.builder}, {self.what})"


def make_job_worker(
    settings: Settings, entry: BuilderEntry, host: str, host_index: int = 0, slot: int = 0
) -> ServiceDockerWorker:
    """The latent worker of one job builder on one Docker host; image, volumes, CPU share and services
    are rendered per build from the job's definition at the build's revision."""
    values = _JobValues(settings, entry)
    images = images_of(settings)
    # the `worker_password` secret when configured, else Buildbot's random per-start password
    password = WORKER_PASSWORD_SECRET if secret_available(settings, names.WORKER_PASSWORD) else None
    return ServiceDockerWorker(
        names.docker_worker_name(entry.builder, host_index, slot),
        password,
        docker_host=host,
        image=JobValue(values, "image"),
        version="auto",  # negotiate the API version: Debian's engine is older than docker-py's default
        masterFQDN=f"{settings.workers.master_host}:{settings.workers.port}",
        hostconfig=JobValue(values, "hostconfig"),
        volumes=JobValue(values, "volumes"),
        build_wait_timeout=0,
        max_builds=1,
        instance=settings.workers.instance_name or None,
        extra_env={"NAMASKAH_CI_BUILDER": entry.builder},  # the container's; job commands get job.json's
        cache_volume=JobValue(values, "cache"),
        cache_record=str(settings.basedir / docker_caches.RECORD_FILE),
        service_kinds=JobValue(values, "services"),
        service_images={kind: images[kind] for kind in service_specs.SERVICE_NAMES},
        network_mode=settings.workers.network_mode,
        ready_timeout=settings.workers.service_ready_timeout,
        local_ports=host_index == 0 and ds.is_local_engine(host),
    )


def make_docker_workers(settings: Settings, builder_names: list[str], registry: Registry) -> list[Any]:
    """Job builders get `builder_slots` latent workers per Docker host; other builders a LocalWorker."""
    result: list[Any] = []
    for name in builder_names:
        entry = registry.entry(name)
        if entry is None:
            result.append(worker.LocalWorker(names.worker_name(name)))
            continue
        for slot in range(builder_slots(settings)):
            for index, host in enumerate(docker_hosts(settings)):
                result.append(make_job_worker(settings, entry, host, index, slot))
    return result
