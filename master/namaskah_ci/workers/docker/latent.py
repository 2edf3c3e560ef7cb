"""Docker mode workers: a `DockerLatentWorker` per job builder, one fresh container per build.

(Which image, volumes, CPU share and services each build gets, rendered from
the job's definition at the build's revision: `workers/docker/config.py`.)

- `NamaskahDockerWorker`: the stock latent worker (``build_wait_timeout=0``)
  whose containers carry this master's labels, mount the build's cache
  volume (pip downloads and job virtualenvs under ``/cache``: the volume of
  the ref being built, a new one seeded from the default branch's before the
  container starts, `workers/docker/caches.py`; a renderable giving a
  `docker_caches.CachePlan`) and, on first use of a Docker host, remove the
  leftovers of this master's earlier runs and its unused branch volumes.
- `ServiceDockerWorker` (every job builder's, `workers/docker/service_worker.py`): it adds the
  build's PostgreSQL and Redis containers.

Every Docker call runs in a thread (`deferToThread`), as DockerLatentWorker
itself does. Worker passwords: the `worker_password` secret when it is
configured, else Buildbot's random per-start password (`getRandomPass`); either
way it lives only in the master's memory and the container's environment
(removed from it before any build command starts) and is never logged.
See docs/docker.md.
"""

from __future__ import annotations

import functools
import hashlib
import uuid
from collections.abc import Generator
from typing import Any

from buildbot.worker.docker import DockerLatentWorker
from twisted.internet import defer, threads
from twisted.python import log

from namaskah_ci.fixes.docker_client import LabelledWorkerClientMixin
from namaskah_ci.workers.docker import caches as docker_caches
from namaskah_ci.workers.docker import services as ds

# the leftovers' removal of each (Docker host, instance label): once per master process
_reaps: dict[tuple[str, str], defer.Deferred[Any]] = {}


@functools.cache
def incarnation() -> str:
    """Identifies this master process: containers of other incarnations of this master are leftovers."""
    return uuid.uuid4().hex[:12]


def default_instance_name(master_name: str) -> str:
    """The label value naming a master when `[workers] instance_name` is empty: from its host and basedir."""
    return "namaskah-" + hashlib.sha256(master_name.encode()).hexdigest()[:12]


class NamaskahDockerWorker(LabelledWorkerClientMixin, DockerLatentWorker):
    """A latent worker for one job builder; see the module docstring. Its worker container is labelled and
    put on the build's network by `fixes/docker_client.py` (Buildbot has no public hook for either)."""

    # the running build's resources: class defaults, so a reconfig during a build keeps them
    build_key: str | None = None
    build_network: str | None = None

    def checkConfig(
        self,
        name: str,
        password: Any,
        docker_host: str,
        *,
        instance: str | None = None,
        extra_env: dict[str, str] | None = None,
        cache_volume: Any = None,
        cache_record: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().checkConfig(name, password, docker_host, **kwargs)

    @defer.inlineCallbacks
    def reconfigService(
        self,
        name: str,
        password: Any,
        docker_host: str,
        *,
        instance: str | None = None,
        extra_env: dict[str, str] | None = None,
        cache_volume: Any = None,
        cache_record: str | None = None,
        **kwargs: Any,
    ) -> Generator[Any, Any, None]:
        yield super().reconfigService(name, password, docker_host, **kwargs)
        self.instance_label: str = instance or default_instance_name(self.master.name)
        self.extra_env = dict(extra_env or {})
        self.cache_volume_name: Any = cache_volume  # a CachePlan, a volume name, or a renderable of either
        self.cache_record = docker_caches.CacheRecord(cache_record) if cache_record else None
        # leftovers of this master's earlier runs go as soon as it is configured (once per run and
        # Docker host, in a thread; the first start_instance there waits for it)
        self.reap_leftovers_once()

    # --- labels, environment, leftovers -------------------------------------------------
    def container_labels(self, role: str = "worker") -> dict[str, str]:
        return ds.labels_for(self.instance_label, incarnation(), self.build_key or "", role, self.workername)

    def createEnvironment(self, build: Any = None) -> dict[str, str]:
        return {**self.extra_env, **super().createEnvironment(build)}

    def _client_args(self) -> dict[str, Any]:
        return {**self.client_args, "base_url": self.docker_host}

    def reap_leftovers_once(self) -> defer.Deferred[None]:
        """The first worker to use a Docker host removes this master's leftovers there, once per run."""
        key = (self.docker_host, self.instance_label)
        if key not in _reaps:
            d = threads.deferToThread(self._thd_reap, self._client_args(), self.instance_label, incarnation())  # type: ignore[no-untyped-call]  # Twisted leaves it unannotated
            d.addCallback(lambda reaped: reaped and log.msg(f"docker: removed leftovers of an earlier run: {reaped}"))
            d.addErrback(log.err, f"docker: could not remove leftovers on {self.docker_host}")
            _reaps[key] = d
        waiter: defer.Deferred[None] = defer.Deferred()

        def release(result: Any) -> Any:
            waiter.callback(None)
            return result

        _reaps[key].addBoth(release)
        return waiter

    def _thd_reap(self, client_args: dict[str, Any], instance: str, current: str) -> list[str]:
        client = self.raw_client(client_args)
        try:
            reaped = ds.reap_leftovers(client, instance, current)
            return reaped + docker_caches.prune(client, instance, self.cache_record, self.docker_host)
        finally:
            client.close()

    def _thd_prepare(self, client_args: dict[str, Any], plan: docker_caches.CachePlan, image: str) -> None:
        client = self.raw_client(client_args)
        try:
            docker_caches.prepare(
                client,
                plan,
                image,
                self.container_labels(docker_caches.ROLE_SEED),
                self.cache_record,
                self.docker_host,
                log=log.msg,
            )
        finally:
            client.close()

    @defer.inlineCallbacks
    def start_instance(self, build: Any) -> Generator[Any, Any, Any]:
        yield self.reap_leftovers_once()
        if self.build_key is None:
            self.build_key = f"{self.workername}-{uuid.uuid4().hex[:10]}"
        plan = yield build.render(self.cache_volume_name)  # the cache volume of the ref being built
        if isinstance(plan, str):
            plan = docker_caches.CachePlan(plan) if plan else None
        if plan:
            image = yield build.render(self.image)  # a new branch volume is seeded in the job's image
            yield threads.deferToThread(self._thd_prepare, self._client_args(), plan, image)  # type: ignore[no-untyped-call]  # Twisted leaves it unannotated
        result = yield super().start_instance(build)
        return result

    def stop_instance(self, fast: bool = False) -> Any:
        self.build_key = None
        self.build_network = None
        return super().stop_instance(fast)
