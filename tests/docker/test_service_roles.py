"""Docker mode's service containers give a job what local mode's servers give it (`ci_services.py`):
a PostgreSQL role that owns its database but is no superuser, and a Redis without the commands that
reach beyond its data, and that no client without its password may use (NOAUTH). Real engine, real
images; the job's side is a client on the host, as a job container with host networking is."""

from __future__ import annotations

import time

import docker
import psycopg
import pytest
from redis import Redis
from redis.exceptions import AuthenticationError, ResponseError

from docker_harness import require_engine_and_images
from namaskah_ci.workers.docker import service_specs
from namaskah_ci.workers.docker import services as ds

pytestmark = [pytest.mark.docker, pytest.mark.timeout(300)]


def test_the_jobs_role_is_no_superuser_and_redis_writes_no_file_elsewhere():
    require_engine_and_images()
    api = docker.APIClient(version="auto", timeout=60)
    instance = f"test-roles-{time.time_ns()}"
    ports = ds.PortAllocator(local=True)
    specs = [
        service_specs.postgres_spec(
            "namaskah-ci/postgres:15", "127.0.0.1", ports.allocate(), service_specs.new_password()
        ),
        service_specs.redis_spec("namaskah-ci/redis:7", "127.0.0.1", ports.allocate()),
    ]
    labels = ds.labels_for(instance, "incarnation-1", "build-1", "service", "docker-test")
    containers = ds.start_services(api, specs, labels, "host", instance, timeout=90)
    try:
        database, cache = specs[0].url, specs[1].url
        assert database.startswith("postgresql://namaskah:") and database.endswith("/namaskah_ci")
        with psycopg.connect(database, autocommit=True, connect_timeout=10) as conn:
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="pg_execute_server_program"):
                conn.execute("COPY (SELECT 1) TO PROGRAM 'touch /tmp/pwned'")
            role = conn.execute(
                "SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = current_user"
            ).fetchone()
            assert role == (False, False, True)
            conn.execute("CREATE EXTENSION IF NOT EXISTS pgcrypto")  # trusted: a database owner may
            conn.execute("CREATE TABLE probe (id serial PRIMARY KEY)")  # its own public schema
            conn.execute("CREATE DATABASE probe_copy")
            conn.execute("DROP DATABASE probe_copy")
        stranger = Redis(host="127.0.0.1", port=specs[1].port, socket_timeout=5)  # another build, on loopback
        try:
            with pytest.raises(AuthenticationError, match="Authentication required"):  # NOAUTH
                stranger.ping()
        finally:
            stranger.close()
        client = Redis.from_url(cache, socket_timeout=5)
        try:
            for command in (
                ("CONFIG", "SET", "dir", "/tmp"),
                ("SLAVEOF", "127.0.0.1", "1"),
                ("MODULE", "LIST"),
                ("DEBUG", "SLEEP", "0"),
            ):
                with pytest.raises(ResponseError, match="unknown command"):
                    client.execute_command(*command)
            assert client.ping()
        finally:
            client.close()
    finally:
        ds.remove_build_resources(api, list(containers), "host")
        api.close()
