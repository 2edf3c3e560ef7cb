"""Per-build PostgreSQL and Redis service containers, and the labels every container carries.

Everything here talks to a Docker engine through a blocking `docker.APIClient`
and is meant to run in a thread (`deferToThread`), never in the reactor. The
worker classes in `workers/docker/latent.py` and `service_worker.py` call these functions around a build:

- `start_services`: create and start one container per service, health-gated
  (Docker healthchecks with `pg_isready` / `redis-cli ping`), bounded by a
  deadline, then `set_up` (the job's database role); on any failure it removes
  what it started and raises `ServiceError` with the container's last health
  output and log lines.
- `remove_build_resources`: remove a build's containers (and its network in
  `per-build` network mode); missing ones are fine.
- `reap_leftovers`: remove containers and networks of this master left by an
  earlier run of it (another incarnation), e.g. after a crash.

A job gets what local mode's `ci_services.py` gives it: in PostgreSQL a role
(`namaskah`) that owns its database and may create databases and trusted
extensions but is no superuser (the image's superuser, `postgres`, has a
random password the build never sees; the role is made by `psql` run in the
container once it is ready), and a Redis with a random password (`requirepass`)
and without CONFIG, MODULE, DEBUG, SLAVEOF and REPLICAOF. A pipeline file's
mapping may choose the version (the image's tag), the database, the role and the
password: what each container runs is `workers/docker/service_specs.py`'s. The
variables (`ci_servers.service_variables`, as in local mode: DATABASE_URL, PG*,
POSTGRES_*, REDIS_*; passwords and all) go only into the build's worker
container's environment (`workers/docker/service_worker.py`), never into a build
property or a log. Service containers are compatible with the official
`postgres:15` and `redis:7` images as well as the ones built from `workers/`.
"""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from namaskah_ci.workers.docker.service_specs import ServiceError, ServiceSpec

LABEL_PREFIX = "org.namaskah.ci"
LABEL_MASTER = f"{LABEL_PREFIX}.master"  # the master's instance name: every container of this master
LABEL_INCARNATION = f"{LABEL_PREFIX}.incarnation"  # one master process; others' leftovers are reaped
LABEL_BUILD = f"{LABEL_PREFIX}.build"  # the resources of one build share this value
LABEL_ROLE = f"{LABEL_PREFIX}.role"  # worker | postgres | redis | cache | branch-cache | cache-seed
LABEL_WORKER = f"{LABEL_PREFIX}.worker"

HEALTH_INTERVAL_NS = 500_000_000  # 0.5 s between readiness probes
POLL_SECONDS = 0.5
EPHEMERAL_PORTS = (20000, 29999)  # per-build ports when the engine is on another host


class PortAllocator:
    """Hands out per-build TCP ports: free on this host when the engine is local, never twice at once."""

    def __init__(self, local: bool, span: tuple[int, int] = EPHEMERAL_PORTS) -> None:
        self.local = local
        self.span = span
        self._held: set[int] = set()
        self._lock = threading.Lock()

    def allocate(self) -> int:
        with self._lock:
            for _ in range(200):
                port = self._free_local_port() if self.local else random.randint(*self.span)
                if port not in self._held:
                    self._held.add(port)
                    return port
        raise ServiceError("no free TCP port for a service container")

    def release(self, ports: Iterable[int]) -> None:
        with self._lock:
            self._held.difference_update(ports)

    @staticmethod
    def _free_local_port() -> int:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
            return port


def is_local_engine(docker_host: str) -> bool:
    """True when the engine shares this host's network namespace (a unix socket)."""
    return docker_host.startswith("unix://") or docker_host.startswith("/") or not docker_host


def labels_for(instance: str, incarnation: str, build_key: str, role: str, worker: str) -> dict[str, str]:
    return {
        LABEL_MASTER: instance,
        LABEL_INCARNATION: incarnation,
        LABEL_BUILD: build_key,
        LABEL_ROLE: role,
        LABEL_WORKER: worker,
    }


def create_network(client: Any, name: str, labels: dict[str, str]) -> str:
    """A per-build network (per-build network mode only: never used with host networking)."""
    created = client.create_network(name, driver="bridge", labels=labels, check_duplicate=True)
    network_id: str = created.get("Id", name)
    return network_id


def _health_output(state: dict[str, Any]) -> str:
    log = (state.get("Health") or {}).get("Log") or []
    return (log[-1].get("Output") or "").strip() if log else ""


def _log_tail(client: Any, container_id: str, lines: int = 20) -> str:
    try:
        raw = client.logs(container_id, tail=lines)
    except Exception as exc:  # the container may be gone already
        return f"(no logs: {exc})"
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    return text.strip() or "(empty)"


def start_service(client: Any, spec: ServiceSpec, labels: dict[str, str], network: str, container_name: str) -> str:
    """Create and start one service container; return its id."""
    host_config = client.create_host_config(network_mode=network, tmpfs=dict(spec.tmpfs) or None, init=False)
    kwargs: dict[str, Any] = {}
    if network != "host":
        kwargs["networking_config"] = client.create_networking_config(
            {network: client.create_endpoint_config(aliases=[spec.name])}
        )
    created = client.create_container(
        spec.image,
        command=list(spec.command),
        name=container_name,
        environment=dict(spec.environment),
        labels={**labels, LABEL_ROLE: spec.name},
        host_config=host_config,
        healthcheck={
            "test": list(spec.health_test),
            "interval": HEALTH_INTERVAL_NS,
            "timeout": 5_000_000_000,
            "retries": 1_000_000,
            "start_period": 0,
        },
        **kwargs,
    )
    container_id: str = created["Id"]
    client.start(container_id)
    return container_id


def wait_ready(
    client: Any,
    started: list[tuple[ServiceSpec, str]],
    timeout: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Wait until every container's healthcheck passes; raise ServiceError naming the first that cannot."""
    deadline = clock() + timeout
    pending = list(started)
    while pending:
        for spec, container_id in list(pending):
            state = client.inspect_container(container_id)["State"]
            status = (state.get("Health") or {}).get("Status")
            if status == "healthy":
                pending.remove((spec, container_id))
            elif not state.get("Running", False):
                raise ServiceError(
                    f"{spec.name} ({spec.image}) exited with code {state.get('ExitCode')} before it accepted "
                    f"connections on port {spec.port}; its last log lines:\n{_log_tail(client, container_id)}"
                )
        if not pending:
            return
        if clock() >= deadline:
            spec, container_id = pending[0]
            state = client.inspect_container(container_id)["State"]
            raise ServiceError(
                f"{spec.name} ({spec.image}) did not accept connections on port {spec.port} within "
                f"{timeout:.0f}s (last probe: {_health_output(state) or 'no output'}); its last log lines:\n"
                f"{_log_tail(client, container_id)}"
            )
        sleep(POLL_SECONDS)


def set_up(client: Any, started: list[tuple[ServiceSpec, str]]) -> None:
    """Run each ready service's `setup` commands in its container; raise ServiceError naming the first
    that fails, with its output."""
    for spec, container_id in started:
        for command in spec.setup:
            run = client.exec_create(container_id, list(command), user=spec.setup_user)
            output = client.exec_start(run)
            code = client.exec_inspect(run).get("ExitCode")
            if code:
                text = output.decode("utf-8", "replace") if isinstance(output, bytes) else str(output)
                raise ServiceError(
                    f"{spec.name} ({spec.image}): setting it up for the job failed (exit code {code}): "
                    f"{text.strip()[-800:] or 'no output'}"
                )


def start_services(
    client: Any,
    specs: list[ServiceSpec],
    labels: dict[str, str],
    network: str,
    name_prefix: str,
    timeout: float,
    **wait_kwargs: Any,
) -> dict[str, str]:
    """Start every service and wait until all are ready: {container id: service name}.

    On failure, removes the containers it started and raises ServiceError.
    """
    started: list[tuple[ServiceSpec, str]] = []
    try:
        for spec in specs:
            try:
                container_id = start_service(client, spec, labels, network, f"{name_prefix}-{spec.name}")
            except Exception as exc:
                raise ServiceError(f"{spec.name} ({spec.image}) could not be started: {exc}") from exc
            started.append((spec, container_id))
        wait_ready(client, started, timeout, **wait_kwargs)
        set_up(client, started)
    except BaseException:
        remove_containers(client, [container_id for _, container_id in started])
        raise
    return {container_id: spec.name for spec, container_id in started}


def remove_containers(client: Any, container_ids: Iterable[str]) -> list[str]:
    """Force-remove containers with their anonymous volumes; return the ones removed."""
    removed: list[str] = []
    for container_id in container_ids:
        try:
            client.remove_container(container_id, v=True, force=True)
            removed.append(container_id)
        except Exception as exc:  # already gone (NotFound) or being removed: nothing left to do
            if "No such container" not in str(exc) and "404" not in str(exc) and "already in progress" not in str(exc):
                raise
    return removed


def remove_build_resources(client: Any, container_ids: Iterable[str], network: str | None) -> None:
    """Remove a build's service containers and, in per-build network mode, its network."""
    remove_containers(client, container_ids)
    if network and network != "host":
        try:
            client.remove_network(network)
        except Exception as exc:
            if "not found" not in str(exc).lower() and "404" not in str(exc):
                raise


def reap_leftovers(client: Any, instance: str, incarnation: str) -> list[str]:
    """Remove this master's containers and networks that an earlier run of it left; return their names."""
    reaped: list[str] = []
    for container in client.containers(all=True, filters={"label": f"{LABEL_MASTER}={instance}"}):
        labels = container.get("Labels") or {}
        if LABEL_INCARNATION not in labels or labels[LABEL_INCARNATION] == incarnation:
            continue  # the current run's, or not a build container (e.g. the master's own)
        remove_containers(client, [container["Id"]])
        reaped.append((container.get("Names") or [container["Id"]])[0].lstrip("/"))
    for network in client.networks(filters={"label": f"{LABEL_MASTER}={instance}"}):
        labels = network.get("Labels") or {}
        if LABEL_INCARNATION not in labels or labels[LABEL_INCARNATION] == incarnation:
            continue
        try:
            client.remove_network(network["Id"])
            reaped.append(network.get("Name", network["Id"]))
        except Exception as exc:  # still in use by a container being removed: the next start retries
            reaped.append(f"{network.get('Name')} (not removed: {exc})")
    return reaped


def volume_exists(client: Any, name: str) -> bool:
    try:
        client.inspect_volume(name)
        return True
    except Exception:
        return False


def ensure_volume(client: Any, name: str, labels: dict[str, str]) -> bool:
    """Create a named volume (a pip/virtualenv cache) with labels, unless it exists; True: created now."""
    if volume_exists(client, name):
        return False
    client.create_volume(name=name, labels=labels)
    return True
