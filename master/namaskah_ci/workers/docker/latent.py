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
- `ServiceDockerWorker` (every job builder's): it starts the build's services
  (a renderable: the job's `services`), PostgreSQL and/or Redis containers, all
  at once, then the worker container while they get ready (a worker that
  connects first waits for them: no step runs before they accept connections,
  bounded), and hands `DATABASE_URL` / `REDIS_URL` (with their random passwords)
  to the build in the worker container's environment only: never as a build
  property or in a log, which any user of the web UI (and any job, over
  loopback) reads, while every build's services listen on the host's 127.0.0.1.
  `stop_instance` removes them whatever ended the build
  (success, failure, cancel, worker loss); a service that never gets ready
  ends the build (EXCEPTION, "worker cannot substantiate") with the reason in
  the build's preparation log, and nothing is left behind. While the build
  runs, a `docker_watch.ContainerWatch` looks at its service and worker
  containers every few seconds: one that exits or disappears ends the build
  within that bound, its summary naming the container and its exit code.

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

from buildbot.interfaces import LatentWorkerCannotSubstantiate
from buildbot.worker.docker import DockerLatentWorker
from twisted.internet import defer, threads
from twisted.python import log
from twisted.python.failure import Failure

from namaskah_ci.fixes.docker_client import LabelledWorkerClientMixin
from namaskah_ci.workers.docker import caches as docker_caches
from namaskah_ci.workers.docker import services as ds
from namaskah_ci.workers.docker import watch as docker_watch

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


# a running build's services: (client args, container ids, network, ports)
ServiceState = tuple[dict[str, Any], list[str], str, list[int]]


class ServiceDockerWorker(NamaskahDockerWorker):
    """A latent worker whose builds get their own PostgreSQL and/or Redis containers."""

    service_state: ServiceState | None = None  # the running build's
    # DATABASE_URL / REDIS_URL of the running build's services, for its worker container: apart from
    # extra_env, which a reconfiguration (any new job brings one) resets, even while a build starts
    service_env: dict[str, str] | None = None
    ports: ds.PortAllocator | None = None
    watch: docker_watch.ContainerWatch | None = None  # the running build's containers, watched
    watch_interval = docker_watch.CHECK_INTERVAL
    services_ready: defer.Deferred[bool] | None = None  # the running start's readiness wait (see `attached`)

    def checkConfig(
        self,
        name: str,
        password: Any,
        docker_host: str,
        *,
        service_kinds: Any = (),
        service_images: dict[str, str] | None = None,
        network_mode: str = "host",
        ready_timeout: float = 60,
        local_ports: bool | None = None,
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
        service_kinds: Any = (),
        service_images: dict[str, str] | None = None,
        network_mode: str = "host",
        ready_timeout: float = 60,
        local_ports: bool | None = None,
        **kwargs: Any,
    ) -> Generator[Any, Any, None]:
        yield super().reconfigService(name, password, docker_host, **kwargs)
        # not `self.services`: that name belongs to Buildbot's service machinery; a renderable
        # (the job's services at the build's revision) or a tuple
        self.service_kinds: Any = service_kinds if hasattr(service_kinds, "getRenderingFor") else tuple(service_kinds)
        self.service_images = dict(service_images or {})
        self.network_mode = network_mode
        self.ready_timeout = ready_timeout
        # free ports can only be checked on this host: other engines get random ports from a range
        local = ds.is_local_engine(docker_host) if local_ports is None else local_ports
        if self.ports is None or self.ports.local != local:
            self.ports = ds.PortAllocator(local=local)

    def createEnvironment(self, build: Any = None) -> dict[str, str]:
        return {**super().createEnvironment(build), **(self.service_env or {})}

    def _port_allocator(self) -> ds.PortAllocator:
        if self.ports is None:  # reconfigService makes it, before any build
            raise RuntimeError(f"{self.workername}: not configured")
        return self.ports

    def _specs(self, network: str, kinds: tuple[str, ...]) -> tuple[list[ds.ServiceSpec], list[int]]:
        specs: list[ds.ServiceSpec] = []
        ports: list[int] = []
        per_build = network != "host"
        for kind in kinds:
            port = (5432 if kind == "postgres" else 6379) if per_build else self._port_allocator().allocate()
            host = kind if per_build else "127.0.0.1"
            listen = "*" if per_build and kind == "postgres" else ("0.0.0.0" if per_build else "127.0.0.1")
            if not per_build:
                ports.append(port)
            if kind == "postgres":
                specs.append(ds.postgres_spec(self.service_images["postgres"], host, port, ds.new_password(), listen))
            else:
                specs.append(ds.redis_spec(self.service_images["redis"], host, port, listen))
        return specs, ports

    def _thd_network(self, client_args: dict[str, Any], network: str, labels: dict[str, str]) -> None:
        client = self.raw_client(client_args)
        try:
            ds.create_network(client, network, labels)
        finally:
            client.close()

    def _thd_start_one(
        self, client_args: dict[str, Any], spec: ds.ServiceSpec, labels: dict[str, str], network: str, name: str
    ) -> str:
        client = self.raw_client(client_args)
        try:
            return ds.start_service(client, spec, labels, network, name)
        except Exception as exc:
            raise ds.ServiceError(f"{spec.name} ({spec.image}) could not be started: {exc}") from exc
        finally:
            client.close()

    def _thd_wait_ready(self, client_args: dict[str, Any], started: list[tuple[ds.ServiceSpec, str]]) -> None:
        client = self.raw_client(client_args)
        try:
            ds.wait_ready(client, started, self.ready_timeout)
            ds.set_up(client, started)  # the job's database role
        finally:
            client.close()

    @defer.inlineCallbacks
    def _start_services(
        self,
        client_args: dict[str, Any],
        specs: list[ds.ServiceSpec],
        network: str,
        labels: dict[str, str],
        ports: list[int],
    ) -> Generator[Any, Any, list[tuple[ds.ServiceSpec, str]]]:
        """Create and start every service container at once (each in its own thread); recorded in
        `service_state` as they come, so that any failure removes what was started."""
        containers: list[str] = []
        self.service_state = (client_args, containers, network, ports)
        if network != "host":
            yield threads.deferToThread(self._thd_network, client_args, network, labels)  # type: ignore[no-untyped-call]  # Twisted leaves it unannotated
        prefix = f"{self.getContainerName()}-{labels[ds.LABEL_BUILD][-10:]}"
        outcomes = yield defer.DeferredList(
            [
                threads.deferToThread(  # type: ignore[no-untyped-call]  # Twisted leaves it unannotated
                    self._thd_start_one, client_args, spec, labels, network, f"{prefix}-{spec.name}"
                )
                for spec in specs
            ],
            consumeErrors=True,
        )
        containers.extend(value for ok, value in outcomes if ok)
        failed = next((value for ok, value in outcomes if not ok), None)
        if failed is not None:
            failed.raiseException()
        return [(spec, value) for spec, (_, value) in zip(specs, outcomes, strict=True)]

    @defer.inlineCallbacks
    def start_instance(self, build: Any) -> Generator[Any, Any, Any]:
        """The services' containers first (at once), then the worker container while the services get
        ready: PostgreSQL's start overlaps the worker's; the build starts once both are done."""
        yield self.reap_leftovers_once()
        self.build_key = f"{self.workername}-{uuid.uuid4().hex[:10]}"
        network = "host" if self.network_mode == "host" else f"namaskah-{self.build_key}"[:60]
        kinds = yield build.render(self.service_kinds)  # the services of the job at this build's revision
        specs, ports = self._specs(network, tuple(kinds))
        labels = self.container_labels("service")
        client_args = self._client_args()
        try:
            started = yield self._start_services(client_args, specs, network, labels, ports)
            self.service_env = {spec.env_key: spec.url for spec in specs}  # the container's, never a property
            self.build_network = None if network == "host" else network
            ready: defer.Deferred[None] | None = (
                threads.deferToThread(self._thd_wait_ready, client_args, started)  # type: ignore[no-untyped-call]  # Twisted leaves it unannotated
                if started
                else None
            )
            if ready is not None:  # fires True / False before anything else sees the readiness
                gate: defer.Deferred[bool] = defer.Deferred()

                def succeeded(result: None) -> None:
                    gate.callback(True)
                    return result

                def failed_(failure: Failure) -> Failure:
                    gate.callback(False)
                    return failure

                ready.addCallbacks(succeeded, failed_)
                self.services_ready = gate
            outcomes = yield defer.DeferredList(
                [super().start_instance(build), ready or defer.succeed(None)], consumeErrors=True
            )
            self.services_ready = None
            failed = [value for ok, value in outcomes if not ok]
            if failed:
                if outcomes[0][0]:  # the worker container started: it goes too
                    yield NamaskahDockerWorker.stop_instance(self, fast=True)
                failed[-1].raiseException()  # a service that never got ready is the one to name
        except ds.ServiceError as exc:
            self.services_ready = None
            yield self.remove_services()
            self.build_key = None
            raise LatentWorkerCannotSubstantiate(f"{self.workername}: {exc}") from exc
        except BaseException:
            self.services_ready = None
            yield self.remove_services()
            self.build_key = None
            raise
        containers = {container_id: spec.name for spec, container_id in started}
        log.msg(f"{self.workername}: {', '.join(containers.values()) or 'no services'} ready for {self.build_key}")
        self.start_watch(build, client_args, containers)
        return outcomes[0][1]

    @defer.inlineCallbacks
    def attached(self, conn: Any) -> Generator[Any, Any, Any]:
        """A worker container that connects before its services are ready waits for them: no step of
        the build starts before PostgreSQL and Redis accept connections (or the build fails saying so)."""
        gate = self.services_ready
        if gate is not None:
            waiter: defer.Deferred[bool] = defer.Deferred()

            def relay(ok: bool) -> bool:
                waiter.callback(ok)
                return ok

            gate.addBoth(relay)
            ready = yield waiter
            if not ready:  # the start fails naming the service; this connection must not substantiate it
                message = f"{self.workername}: its services never got ready: dropping the worker's connection"
                log.msg(message)
                self._deferwaiter.add(self._disconnect(conn))
                raise RuntimeError(message)
        result = yield super().attached(conn)
        return result

    def start_watch(self, build: Any, client_args: dict[str, Any], services: dict[str, str]) -> None:
        """Watch the build's services and worker container until it ends: one that dies stops it."""
        self.stop_watch()  # an earlier build's, should its end have gone unnoticed
        watched = dict(services)
        if self.instance and self.instance.get("Id"):
            watched[self.instance["Id"]] = docker_watch.WORKER
        self.watch = docker_watch.ContainerWatch(
            self.master.reactor,
            lambda: self.raw_client(client_args),
            watched,
            lambda role, reason: self.container_died(build, role, reason),
            self.watch_interval,
            name=self.workername,
        )
        self.watch.start()

    def container_died(self, build: Any, role: str, reason: str) -> defer.Deferred[Any]:
        """A watched container is gone: stop the build, saying so (a dead service: EXCEPTION; a dead
        worker: RETRY, and its connection is closed, as on a per-build network nothing else would)."""
        stopped = docker_watch.stop_build(build, reason, docker_watch.results_for(role))
        if role == docker_watch.WORKER and self.conn is not None:
            self.conn.loseConnection()
        return stopped

    def detached(self) -> Any:
        # the worker container's connection dropped: look at once, so the build's summary can say why
        if self.watch is not None:
            self.watch.check_now()
        return super().detached()

    def stop_watch(self) -> defer.Deferred[None]:
        watch, self.watch = self.watch, None
        return watch.stop() if watch is not None else defer.succeed(None)

    def buildFinished(self, wfb: Any) -> None:
        self.stop_watch()  # at once: a worker container leaving after its build is no fault
        super().buildFinished(wfb)

    @defer.inlineCallbacks
    def stop_instance(self, fast: bool = False) -> Generator[Any, Any, None]:
        try:
            yield self.stop_watch()  # before anything is removed: a removal is not a fault
            yield super().stop_instance(fast)
        finally:
            yield self.remove_services()

    @defer.inlineCallbacks
    def remove_services(self) -> Generator[Any, Any, None]:
        state, self.service_state = self.service_state, None
        self.service_env = None
        if state is None:
            return
        client_args, containers, network, ports = state
        try:
            yield threads.deferToThread(self._thd_remove, client_args, containers, network)  # type: ignore[no-untyped-call]  # Twisted leaves it unannotated
        finally:
            self._port_allocator().release(ports)

    def _thd_remove(self, client_args: dict[str, Any], containers: list[str], network: str) -> None:
        client = self.raw_client(client_args)
        try:
            ds.remove_build_resources(client, containers, network)
        finally:
            client.close()
