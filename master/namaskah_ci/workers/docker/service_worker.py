"""Docker mode's job worker with per-build services: a `NamaskahDockerWorker` (`workers/docker/latent.py`)
whose builds get their own PostgreSQL and/or Redis containers.

`ServiceDockerWorker`, every job builder's worker in docker mode, starts the build's services
(a renderable: the job's `services`), PostgreSQL and/or Redis containers, all
at once, then the worker container while they get ready (a worker that
connects first waits for them: no step runs before they accept connections,
bounded), and hands their variables (`DATABASE_URL`, libpq's `PG*`, `POSTGRES_*`,
`REDIS_URL`/`_HOST`/`_PORT`/`_PASSWORD`, with the passwords; the version, database
and user the job's file chose) to the build in the worker container's environment only: never as a build
property or in a log, which any user of the web UI (and any job, over
loopback) reads, while every build's services listen on the host's 127.0.0.1.
`stop_instance` removes them whatever ended the build
(success, failure, cancel, worker loss); a service that never gets ready
ends the build (EXCEPTION, "worker cannot substantiate") with the reason in
the build's preparation log, and nothing is left behind. While the build
runs, a `docker_watch.ContainerWatch` looks at its service and worker
containers every few seconds: one that exits or disappears ends the build
within that bound, its summary naming the container and its exit code.

Every Docker call runs in a thread (`deferToThread`). See docs/docker.md.
"""

from __future__ import annotations

import uuid
from collections.abc import Generator
from typing import Any

from buildbot.interfaces import LatentWorkerCannotSubstantiate
from twisted.internet import defer, threads
from twisted.python import log
from twisted.python.failure import Failure

from namaskah_ci import names
from namaskah_ci.per_master import per_master
from namaskah_ci.pipeline.model import PipelineError
from namaskah_ci.pipeline.source import SourceError, SourceState
from namaskah_ci.workers.docker import service_specs
from namaskah_ci.workers.docker import services as ds
from namaskah_ci.workers.docker import watch as docker_watch
from namaskah_ci.workers.docker.latent import NamaskahDockerWorker

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

    def _specs(self, network: str, kinds: tuple[Any, ...]) -> tuple[list[service_specs.ServiceSpec], list[int]]:
        """`kinds`: service names, or the job's service settings ({name, version, database, user} and the
        password the file gives, if any)."""
        specs: list[service_specs.ServiceSpec] = []
        ports: list[int] = []
        per_build = network != "host"
        for each in kinds:
            chosen = {"name": each} if isinstance(each, str) else dict(each)
            kind = chosen["name"]
            port = (5432 if kind == "postgres" else 6379) if per_build else self._port_allocator().allocate()
            host = kind if per_build else "127.0.0.1"
            listen = "*" if per_build and kind == "postgres" else ("0.0.0.0" if per_build else "127.0.0.1")
            if not per_build:
                ports.append(port)
            image = service_specs.service_image(self.service_images[kind], chosen.get("version") or "")
            password = chosen.get("password") or service_specs.new_password()
            if kind == "postgres":
                names = {key: chosen[key] for key in ("database", "user") if chosen.get(key)}
                specs.append(service_specs.postgres_spec(image, host, port, password, listen, **names))
            else:
                specs.append(service_specs.redis_spec(image, host, port, listen, password=password))
        return specs, ports

    def _thd_network(self, client_args: dict[str, Any], network: str, labels: dict[str, str]) -> None:
        client = self.raw_client(client_args)
        try:
            ds.create_network(client, network, labels)
        finally:
            client.close()

    def _thd_start_one(
        self,
        client_args: dict[str, Any],
        spec: service_specs.ServiceSpec,
        labels: dict[str, str],
        network: str,
        name: str,
    ) -> str:
        client = self.raw_client(client_args)
        try:
            return ds.start_service(client, spec, labels, network, name)
        except Exception as exc:
            configured = self.service_images.get(spec.name, "")
            chosen = (
                f" (the version's tag of [workers] images {spec.name!r} = {configured}: build or pull {spec.image})"
                if configured and spec.image != configured
                else ""
            )
            raise service_specs.ServiceError(f"{spec.name} ({spec.image}) could not be started{chosen}: {exc}") from exc
        finally:
            client.close()

    def _thd_wait_ready(
        self, client_args: dict[str, Any], started: list[tuple[service_specs.ServiceSpec, str]]
    ) -> None:
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
        specs: list[service_specs.ServiceSpec],
        network: str,
        labels: dict[str, str],
        ports: list[int],
    ) -> Generator[Any, Any, list[tuple[service_specs.ServiceSpec, str]]]:
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
    def given_passwords(self, build: Any, kinds: tuple[Any, ...]) -> Generator[Any, Any, tuple[Any, ...]]:
        """`kinds` with the passwords the job's file gives (`password_given`): never in the build's
        properties, so read again from the file at the build's revision, through the master's pipeline
        reader (the one its pipeline builds used: the file is parsed once)."""
        if not any(isinstance(each, dict) and each.get("password_given") for each in kinds):
            return kinds
        revision, builder = build.getProperty(names.PROP_JOB_REVISION), build.getProperty("buildername")
        readers = list(per_master(self.master, "pipeline_sources", SourceState).sources.values())
        for reader in readers[:1]:
            try:
                pipeline = yield reader.pipeline_at(revision)
            except (PipelineError, SourceError) as exc:
                raise service_specs.ServiceError(f"the services' passwords: {exc}") from exc
            job = pipeline.job(builder)
            if job is not None:
                given = dict(job.service_passwords)
                return tuple(
                    {**each, "password": given.get(each["name"], "")} if isinstance(each, dict) else each
                    for each in kinds
                )
        raise service_specs.ServiceError(
            f"the password the pipeline file gives {builder}'s services could not be read again"
        )

    @defer.inlineCallbacks
    def start_instance(self, build: Any) -> Generator[Any, Any, Any]:
        """The services' containers first (at once), then the worker container while the services get
        ready: PostgreSQL's start overlaps the worker's; the build starts once both are done."""
        yield self.reap_leftovers_once()
        self.build_key = f"{self.workername}-{uuid.uuid4().hex[:10]}"
        network = "host" if self.network_mode == "host" else f"namaskah-{self.build_key}"[:60]
        kinds = yield build.render(self.service_kinds)  # the services of the job at this build's revision
        try:
            kinds = yield self.given_passwords(build, tuple(kinds))
        except service_specs.ServiceError as exc:
            self.build_key = None
            raise LatentWorkerCannotSubstantiate(f"{self.workername}: {exc}") from exc
        specs, ports = self._specs(network, tuple(kinds))
        labels = self.container_labels("service")
        client_args = self._client_args()
        try:
            started = yield self._start_services(client_args, specs, network, labels, ports)
            # the container's, never a property: DATABASE_URL, PG*, POSTGRES_*, REDIS_* (with the passwords)
            self.service_env = {key: value for spec in specs for key, value in spec.variables.items()}
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
        except service_specs.ServiceError as exc:
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
