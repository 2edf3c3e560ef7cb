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

import hashlib
import uuid

from twisted.internet import defer, threads
from twisted.python import log

from buildbot.interfaces import LatentWorkerCannotSubstantiate
from buildbot.worker.docker import DockerLatentWorker

from namaskah_ci.workers.docker import caches as docker_caches
from namaskah_ci.workers.docker import services as ds
from namaskah_ci.workers.docker import watch as docker_watch

_incarnation: str | None = None
_reaps: dict[tuple[str, str], defer.Deferred] = {}


def incarnation() -> str:
    """Identifies this master process: containers of other incarnations of this master are leftovers."""
    global _incarnation
    if _incarnation is None:
        _incarnation = uuid.uuid4().hex[:12]
    return _incarnation


def default_instance_name(master_name: str) -> str:
    """The label value naming a master when `[workers] instance_name` is empty: from its host and basedir."""
    return "namaskah-" + hashlib.sha256(master_name.encode()).hexdigest()[:12]


class _LabellingClient:
    """A docker.APIClient that adds this worker's labels (and its build's network) to its container."""

    def __init__(self, client, labels: dict[str, str], network: str | None):
        self._client = client
        self._labels = labels
        self._network = network

    def create_host_config(self, **kwargs):
        if self._network:
            kwargs["network_mode"] = self._network
        return self._client.create_host_config(**kwargs)

    def create_container(self, image, command=None, **kwargs):
        kwargs["labels"] = {**(kwargs.get("labels") or {}), **self._labels}
        return self._client.create_container(image, command, **kwargs)

    def __getattr__(self, name):
        return getattr(self._client, name)


class NamaskahDockerWorker(DockerLatentWorker):
    """A latent worker for one job builder; see the module docstring."""

    # the running build's resources: class defaults, so a reconfig during a build keeps them
    build_key: str | None = None
    build_network: str | None = None

    def checkConfig(self, name, password, docker_host, *, instance=None, extra_env=None, cache_volume=None,
                    cache_record=None, **kwargs):
        super().checkConfig(name, password, docker_host, **kwargs)

    @defer.inlineCallbacks
    def reconfigService(
        self, name, password, docker_host, *, instance=None, extra_env=None, cache_volume=None, cache_record=None,
        **kwargs
    ):
        yield super().reconfigService(name, password, docker_host, **kwargs)
        self.instance_label = instance or default_instance_name(self.master.name)
        self.extra_env = dict(extra_env or {})
        self.cache_volume_name = cache_volume  # a CachePlan, a volume name, or a renderable of either
        self.cache_record = docker_caches.CacheRecord(cache_record) if cache_record else None
        # leftovers of this master's earlier runs go as soon as it is configured (once per run and
        # Docker host, in a thread; the first start_instance there waits for it)
        self.reap_leftovers_once()

    # --- labels, environment, leftovers -------------------------------------------------
    def container_labels(self, role: str = "worker") -> dict[str, str]:
        return ds.labels_for(self.instance_label, incarnation(), self.build_key or "", role, self.workername)

    def _getDockerClient(self, client_args):
        """What DockerLatentWorker uses for the worker container: labelled, on the build's network."""
        return _LabellingClient(self.raw_client(client_args), self.container_labels(), self.build_network)

    def raw_client(self, client_args):
        return DockerLatentWorker._getDockerClient(self, client_args)

    def createEnvironment(self, build=None):
        return {**self.extra_env, **super().createEnvironment(build)}

    def _client_args(self) -> dict:
        return {**self.client_args, "base_url": self.docker_host}

    def reap_leftovers_once(self) -> defer.Deferred:
        """The first worker to use a Docker host removes this master's leftovers there, once per run."""
        key = (self.docker_host, self.instance_label)
        if key not in _reaps:
            d = threads.deferToThread(self._thd_reap, self._client_args(), self.instance_label, incarnation())
            d.addCallback(lambda reaped: reaped and log.msg(f"docker: removed leftovers of an earlier run: {reaped}"))
            d.addErrback(log.err, f"docker: could not remove leftovers on {self.docker_host}")
            _reaps[key] = d
        waiter: defer.Deferred = defer.Deferred()
        _reaps[key].addBoth(lambda result: (waiter.callback(None), result)[1])
        return waiter

    def _thd_reap(self, client_args, instance, current):
        client = self.raw_client(client_args)
        try:
            reaped = ds.reap_leftovers(client, instance, current)
            return reaped + docker_caches.prune(client, instance, self.cache_record, self.docker_host)
        finally:
            client.close()

    def _thd_prepare(self, client_args, plan, image):
        client = self.raw_client(client_args)
        try:
            docker_caches.prepare(client, plan, image, self.container_labels(docker_caches.ROLE_SEED),
                                  self.cache_record, self.docker_host, log=log.msg)
        finally:
            client.close()

    @defer.inlineCallbacks
    def start_instance(self, build):
        yield self.reap_leftovers_once()
        if self.build_key is None:
            self.build_key = f"{self.workername}-{uuid.uuid4().hex[:10]}"
        plan = yield build.render(self.cache_volume_name)  # the cache volume of the ref being built
        if isinstance(plan, str):
            plan = docker_caches.CachePlan(plan) if plan else None
        if plan:
            image = yield build.render(self.image)  # a new branch volume is seeded in the job's image
            yield threads.deferToThread(self._thd_prepare, self._client_args(), plan, image)
        result = yield super().start_instance(build)
        return result

    def stop_instance(self, fast=False):
        self.build_key = None
        self.build_network = None
        return super().stop_instance(fast)


class ServiceDockerWorker(NamaskahDockerWorker):
    """A latent worker whose builds get their own PostgreSQL and/or Redis containers."""

    service_state: tuple | None = None  # (client args, container ids, network, ports) of the running build
    # DATABASE_URL / REDIS_URL of the running build's services, for its worker container: apart from
    # extra_env, which a reconfiguration (any new job brings one) resets, even while a build starts
    service_env: dict | None = None
    ports: ds.PortAllocator | None = None
    watch: docker_watch.ContainerWatch | None = None  # the running build's containers, watched
    watch_interval = docker_watch.CHECK_INTERVAL
    services_ready: defer.Deferred | None = None  # the running start's readiness wait (see `attached`)

    def checkConfig(
        self,
        name,
        password,
        docker_host,
        *,
        service_kinds=(),
        service_images=None,
        network_mode="host",
        ready_timeout=60,
        local_ports=None,
        **kwargs,
    ):
        super().checkConfig(name, password, docker_host, **kwargs)

    @defer.inlineCallbacks
    def reconfigService(
        self,
        name,
        password,
        docker_host,
        *,
        service_kinds=(),
        service_images=None,
        network_mode="host",
        ready_timeout=60,
        local_ports=None,
        **kwargs,
    ):
        yield super().reconfigService(name, password, docker_host, **kwargs)
        # not `self.services`: that name belongs to Buildbot's service machinery; a renderable
        # (the job's services at the build's revision) or a tuple
        self.service_kinds = service_kinds if hasattr(service_kinds, "getRenderingFor") else tuple(service_kinds)
        self.service_images = dict(service_images or {})
        self.network_mode = network_mode
        self.ready_timeout = ready_timeout
        # free ports can only be checked on this host: other engines get random ports from a range
        local = ds.is_local_engine(docker_host) if local_ports is None else local_ports
        if self.ports is None or self.ports.local != local:
            self.ports = ds.PortAllocator(local=local)

    def createEnvironment(self, build=None):
        return {**super().createEnvironment(build), **(self.service_env or {})}

    def _specs(self, network: str, kinds: tuple) -> tuple[list[ds.ServiceSpec], list[int]]:
        specs, ports = [], []
        per_build = network != "host"
        for kind in kinds:
            port = (5432 if kind == "postgres" else 6379) if per_build else self.ports.allocate()
            host = kind if per_build else "127.0.0.1"
            listen = "*" if per_build and kind == "postgres" else ("0.0.0.0" if per_build else "127.0.0.1")
            if not per_build:
                ports.append(port)
            if kind == "postgres":
                specs.append(ds.postgres_spec(self.service_images["postgres"], host, port, ds.new_password(), listen))
            else:
                specs.append(ds.redis_spec(self.service_images["redis"], host, port, listen))
        return specs, ports

    def _thd_network(self, client_args, network, labels):
        client = self.raw_client(client_args)
        try:
            ds.create_network(client, network, labels)
        finally:
            client.close()

    def _thd_start_one(self, client_args, spec, labels, network, name):
        client = self.raw_client(client_args)
        try:
            return ds.start_service(client, spec, labels, network, name)
        except Exception as exc:
            raise ds.ServiceError(f"{spec.name} ({spec.image}) could not be started: {exc}") from exc
        finally:
            client.close()

    def _thd_wait_ready(self, client_args, started):
        client = self.raw_client(client_args)
        try:
            ds.wait_ready(client, started, self.ready_timeout)
            ds.set_up(client, started)  # the job's database role
        finally:
            client.close()

    @defer.inlineCallbacks
    def _start_services(self, client_args, specs, network, labels, ports):
        """Create and start every service container at once (each in its own thread); recorded in
        `service_state` as they come, so that any failure removes what was started."""
        self.service_state = (client_args, [], network, ports)
        if network != "host":
            yield threads.deferToThread(self._thd_network, client_args, network, labels)
        prefix = f"{self.getContainerName()}-{labels[ds.LABEL_BUILD][-10:]}"
        outcomes = yield defer.DeferredList(
            [threads.deferToThread(self._thd_start_one, client_args, spec, labels, network, f"{prefix}-{spec.name}")
             for spec in specs],
            consumeErrors=True,
        )
        self.service_state[1].extend(value for ok, value in outcomes if ok)
        failed = next((value for ok, value in outcomes if not ok), None)
        if failed is not None:
            failed.raiseException()
        return [(spec, value) for spec, (_, value) in zip(specs, outcomes)]

    @defer.inlineCallbacks
    def start_instance(self, build):
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
            ready = threads.deferToThread(self._thd_wait_ready, client_args, started) if started else None
            if ready is not None:  # fires True / False before anything else sees the readiness
                gate: defer.Deferred = defer.Deferred()
                ready.addCallbacks(lambda r: (gate.callback(True), r)[1], lambda f: (gate.callback(False), f)[1])
                self.services_ready = gate
            outcomes = yield defer.DeferredList([super().start_instance(build), ready or defer.succeed(None)],
                                                consumeErrors=True)
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
    def attached(self, conn):
        """A worker container that connects before its services are ready waits for them: no step of
        the build starts before PostgreSQL and Redis accept connections (or the build fails saying so)."""
        gate = self.services_ready
        if gate is not None:
            waiter: defer.Deferred = defer.Deferred()
            gate.addBoth(lambda ok: (waiter.callback(ok), ok)[1])
            ready = yield waiter
            if not ready:  # the start fails naming the service; this connection must not substantiate it
                message = f"{self.workername}: its services never got ready: dropping the worker's connection"
                log.msg(message)
                self._deferwaiter.add(self._disconnect(conn))
                raise RuntimeError(message)
        result = yield super().attached(conn)
        return result

    def start_watch(self, build, client_args, services: dict[str, str]) -> None:
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

    def container_died(self, build, role: str, reason: str):
        """A watched container is gone: stop the build, saying so (a dead service: EXCEPTION; a dead
        worker: RETRY, and its connection is closed, as on a per-build network nothing else would)."""
        stopped = docker_watch.stop_build(build, reason, docker_watch.results_for(role))
        if role == docker_watch.WORKER and self.conn is not None:
            self.conn.loseConnection()
        return stopped

    def detached(self):
        # the worker container's connection dropped: look at once, so the build's summary can say why
        if self.watch is not None:
            self.watch.check_now()
        return super().detached()

    def stop_watch(self) -> defer.Deferred:
        watch, self.watch = self.watch, None
        return watch.stop() if watch is not None else defer.succeed(None)

    def buildFinished(self, wfb):
        self.stop_watch()  # at once: a worker container leaving after its build is no fault
        super().buildFinished(wfb)

    @defer.inlineCallbacks
    def stop_instance(self, fast=False):
        try:
            yield self.stop_watch()  # before anything is removed: a removal is not a fault
            yield super().stop_instance(fast)
        finally:
            yield self.remove_services()

    @defer.inlineCallbacks
    def remove_services(self):
        state, self.service_state = self.service_state, None
        self.service_env = None
        if state is None:
            return
        client_args, containers, network, ports = state
        try:
            yield threads.deferToThread(self._thd_remove, client_args, containers, network)
        finally:
            self.ports.release(ports)

    def _thd_remove(self, client_args, containers, network):
        client = self.raw_client(client_args)
        try:
            ds.remove_build_resources(client, containers, network)
        finally:
            client.close()
