"""Service containers against a real Docker engine, without a master: fast checks of
`docker_services` (PostgreSQL 15 and Redis 7 on per-build 127.0.0.1 ports, host networking).
"""

from __future__ import annotations

import socket
import time

import docker
import pytest

from docker_harness import build_never_ready_image, require_engine_and_images
from namaskah_ci.workers.docker import service_specs
from namaskah_ci.workers.docker import services as ds

pytestmark = [pytest.mark.docker, pytest.mark.timeout(300)]


@pytest.fixture
def client():
    require_engine_and_images()
    api = docker.APIClient(version="auto", timeout=60)
    instance = f"test-services-{time.time_ns()}"
    yield api, instance
    leftovers = api.containers(all=True, filters={"label": f"{ds.LABEL_MASTER}={instance}"})
    for container in leftovers:
        api.remove_container(container["Id"], force=True, v=True)
    api.close()
    assert not leftovers, [c["Names"] for c in leftovers]


def labels(instance: str) -> dict[str, str]:
    return ds.labels_for(instance, "incarnation-1", "build-1", "service", "docker-test")


def accepts(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_postgres_and_redis_get_ready_answer_and_go(client):
    api, instance = client
    ports = ds.PortAllocator(local=True)
    pg_port, redis_port = ports.allocate(), ports.allocate()
    password = service_specs.new_password()
    specs = [
        service_specs.postgres_spec("namaskah-ci/postgres:15", "127.0.0.1", pg_port, password),
        service_specs.redis_spec("namaskah-ci/redis:7", "127.0.0.1", redis_port),
    ]
    started = time.monotonic()
    containers = ds.start_services(api, specs, labels(instance), "host", f"{instance}", timeout=60)
    ready_after = time.monotonic() - started
    assert sorted(containers.values()) == ["postgres", "redis"]
    assert accepts(pg_port) and accepts(redis_port)
    pg_id = next(cid for cid, name in containers.items() if name == "postgres")
    # the database and the user exist, and the password is required over TCP
    query = api.exec_create(
        pg_id,
        ["psql", specs[0].url, "-tAc", "select current_user || ' ' || current_database() || ' ' || version()"],
    )
    output = api.exec_start(query).decode()
    assert output.startswith("namaskah namaskah_ci PostgreSQL 15."), output
    wrong = specs[0].url.replace(password, "wrong")
    denied = api.exec_create(pg_id, ["psql", wrong, "-tAc", "select 1"])
    assert "password authentication failed" in api.exec_start(denied).decode()
    redis_id = next(cid for cid, name in containers.items() if name == "redis")
    info = api.exec_start(api.exec_create(redis_id, ["redis-cli", "-p", str(redis_port), "info", "server"])).decode()
    assert "redis_version:7." in info
    ds.remove_build_resources(api, list(containers), "host")
    assert not api.containers(all=True, filters={"label": f"{ds.LABEL_MASTER}={instance}"})
    assert not accepts(pg_port)
    print(f"services ready after {ready_after:.1f}s")


def test_a_service_that_never_listens_times_out_and_is_removed(client):
    api, instance = client
    image = build_never_ready_image()
    port = ds.PortAllocator(local=True).allocate()
    spec = service_specs.postgres_spec(image, "127.0.0.1", port, service_specs.new_password())
    started = time.monotonic()
    with pytest.raises(service_specs.ServiceError) as caught:
        ds.start_services(api, [spec], labels(instance), "host", instance, timeout=4)
    assert time.monotonic() - started < 4 + 15
    message = str(caught.value)
    assert f"did not accept connections on port {port} within 4s" in message
    assert "never listening" in message  # the container's log is in the message
    assert not api.containers(all=True, filters={"label": f"{ds.LABEL_MASTER}={instance}"})


def test_leftovers_of_another_incarnation_are_reaped(client):
    api, instance = client
    port = ds.PortAllocator(local=True).allocate()
    spec = service_specs.redis_spec("namaskah-ci/redis:7", "127.0.0.1", port)
    ds.start_services(api, [spec], labels(instance), "host", f"{instance}-old", timeout=60)
    current = ds.labels_for(instance, "incarnation-2", "build-2", "service", "docker-test")
    spec2 = service_specs.redis_spec("namaskah-ci/redis:7", "127.0.0.1", ds.PortAllocator(local=True).allocate())
    ds.start_services(api, [spec2], current, "host", f"{instance}-new", timeout=60)
    reaped = ds.reap_leftovers(api, instance, "incarnation-2")
    assert reaped == [f"{instance}-old-redis"]
    remaining = api.containers(all=True, filters={"label": f"{ds.LABEL_MASTER}={instance}"})
    assert [c["Names"][0] for c in remaining] == [f"/{instance}-new-redis"]
    ds.remove_containers(api, [c["Id"] for c in remaining])
