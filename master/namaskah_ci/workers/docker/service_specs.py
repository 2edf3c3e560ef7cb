"""What a per-build service container runs: PostgreSQL with the job's own role (not a superuser) and
database, Redis with a password and without the commands that reach beyond its data; the image and
tag (`[workers] images` and the file's `version`), the readiness test, and the variables the build
gets (`ci_servers.service_variables`, as in local mode). Pure: `workers/docker/services.py` starts them.
"""

from __future__ import annotations

import dataclasses
import secrets

from namaskah_ci.helpers.ci_servers import service_variables

SERVICE_NAMES = ("postgres", "redis")
POSTGRES_USER = "namaskah"  # the job's role: owner of POSTGRES_DB, not a superuser
POSTGRES_ADMIN = "postgres"  # the image's superuser (POSTGRES_USER of the image's environment)
POSTGRES_DB = "namaskah_ci"
# Redis commands a job never needs that reach beyond its own data (files, modules, replication)
REDIS_DISABLED = ("CONFIG", "MODULE", "DEBUG", "SLAVEOF", "REPLICAOF")


class ServiceError(Exception):
    """A service container did not start or did not become ready; the message says why."""


@dataclasses.dataclass(frozen=True)
class ServiceSpec:
    """One service container: what to run and how to tell that it is ready."""

    name: str  # postgres | redis
    image: str
    command: tuple[str, ...]
    environment: dict[str, str]
    health_test: tuple[str, ...]
    port: int
    url: str  # what the build gets as DATABASE_URL / REDIS_URL
    env_key: str
    variables: dict[str, str] = dataclasses.field(default_factory=dict)  # every one the build gets
    tmpfs: dict[str, str] = dataclasses.field(default_factory=dict)
    setup: tuple[tuple[str, ...], ...] = ()  # commands run in the container once it is ready (`set_up`)
    setup_user: str = ""


def service_image(image: str, version: str) -> str:
    """`image` (`[workers] images` "postgres" / "redis") with `version` as its tag: `postgres:15` and
    "16" give `postgres:16`; no version, the image as configured."""
    if not version:
        return image
    repository, _, tag = image.rpartition(":")
    return f"{repository if repository and '/' not in tag else image}:{version}"


def postgres_spec(
    image: str,
    host: str,
    port: int,
    password: str,
    listen: str = "127.0.0.1",
    *,
    database: str = POSTGRES_DB,
    user: str = POSTGRES_USER,
) -> ServiceSpec:
    """PostgreSQL on `port`; data on a tmpfs (fast, and nothing to clean up); fsync off. `password` is the
    job's role's (`user`, owner of `database`); the superuser's is another, random one."""
    variables = service_variables("postgres", host, port, password, user, database)
    role = f"CREATE ROLE {user} LOGIN CREATEDB NOSUPERUSER NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD '{password}'"
    psql = (
        "psql",
        "-v",
        "ON_ERROR_STOP=1",
        "-q",
        "-h",
        "/var/run/postgresql",
        "-p",
        str(port),
        "-U",
        POSTGRES_ADMIN,
        "-d",
        database,
        "-c",
        role,
        "-c",
        f"ALTER DATABASE {database} OWNER TO {user}",
    )
    return ServiceSpec(
        name="postgres",
        image=image,
        command=(
            "postgres",
            "-p",
            str(port),
            "-c",
            f"listen_addresses={listen}",
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
        ),
        environment={"POSTGRES_USER": POSTGRES_ADMIN, "POSTGRES_PASSWORD": new_password(), "POSTGRES_DB": database},
        health_test=("CMD", "pg_isready", "-q", "-h", "127.0.0.1", "-p", str(port), "-U", POSTGRES_ADMIN),
        port=port,
        url=variables["DATABASE_URL"],
        env_key="DATABASE_URL",
        variables=variables,
        tmpfs={"/var/lib/postgresql/data": "rw,mode=0700"},
        setup=(psql,),
        setup_user="postgres",
    )


def redis_spec(image: str, host: str, port: int, listen: str = "127.0.0.1", *, password: str = "") -> ServiceSpec:
    """Redis on `port`, no persistence, without the commands of REDIS_DISABLED, and with a password
    (`password`, else a new one): every build's Redis listens on the host's loopback. redis-cli in the
    container (the healthcheck, `docker exec`) reads it from REDISCLI_AUTH. The URL names Redis's
    `default` user: redis-cli 7.0's -u fails on an empty one."""
    password = password or new_password()
    variables = service_variables("redis", host, port, password)
    disabled = tuple(part for name in REDIS_DISABLED for part in ("--rename-command", name, ""))
    return ServiceSpec(
        name="redis",
        image=image,
        command=(
            "redis-server",
            "--port",
            str(port),
            "--bind",
            listen,
            "--save",
            "",
            "--appendonly",
            "no",
            "--requirepass",
            password,
            *disabled,
        ),
        environment={"REDISCLI_AUTH": password},
        health_test=("CMD", "redis-cli", "-h", "127.0.0.1", "-p", str(port), "ping"),
        port=port,
        url=variables["REDIS_URL"],
        env_key="REDIS_URL",
        variables=variables,
    )


def new_password() -> str:
    """A throwaway password for one build's database."""
    return secrets.token_hex(12)
