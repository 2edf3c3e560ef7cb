"""Helpers for the real-engine docker-mode tests: engine and image checks, labelled resources.

A test skips (saying why) only when no Docker engine answers; a missing
image is a failure naming `make images`. Containers, networks and volumes
are looked up by the master label every docker-mode container carries
(`org.namaskah.ci.master=<[workers] instance_name>`).
"""

from __future__ import annotations

import os
import subprocess
import uuid

import pytest

MASTER_LABEL = "org.namaskah.ci.master"
IMAGES = (
    "namaskah-ci/worker:py3.9",
    "namaskah-ci/worker:py3.11",
    "namaskah-ci/worker:py3.11-servers",
    "namaskah-ci/tools:latest",
    "namaskah-ci/postgres:15",
    "namaskah-ci/redis:7",
)
NEVER_READY_IMAGE = "namaskah-ci-test/postgres-never-ready:1"


def docker(*args: str, timeout: float = 60, check: bool = True) -> str:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout.strip()


def engine_problem() -> str | None:
    """Why no engine can be used here, or None when one answers."""
    try:
        done = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True, timeout=20
        )
    except FileNotFoundError:
        return "the docker CLI is not installed (apt-get install docker.io)"
    except subprocess.TimeoutExpired:
        return "the Docker engine did not answer `docker info` within 20s"
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["no answer"])[-1]
        return f"no Docker engine answers ({reason}); start one with scripts/start_docker.sh"
    return None


def require_engine_and_images(extra: tuple[str, ...] = ()) -> None:
    problem = engine_problem()
    if problem:
        pytest.skip(problem)
    missing = [image for image in (*IMAGES, *extra) if not image_exists(image)]
    if missing:
        pytest.fail(f"images missing: {', '.join(missing)}: build them with `make images`")


def image_exists(image: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", image], capture_output=True, timeout=30).returncode == 0


def new_instance() -> str:
    """A master label value unique to one test."""
    return f"test-{uuid.uuid4().hex[:10]}"


def docker_env(instance: str, **workers: str) -> dict[str, str]:
    """Environment for `harness.start_master` that puts the master in docker mode."""
    env = {
        "PIPELINE_WORKERS_MODE": "docker",
        "PIPELINE_WORKERS_INSTANCE_NAME": instance,
        "PIPELINE_WORKERS_APP_BASE_IMAGE": os.environ.get("NAMASKAH_APP_BASE_IMAGE", "namaskah-ci/base:bookworm"),
    }
    env.update({f"PIPELINE_WORKERS_{key.upper()}": value for key, value in workers.items()})
    return env


def labelled_containers(instance: str) -> list[str]:
    out = docker("ps", "-a", "--filter", f"label={MASTER_LABEL}={instance}", "--format", "{{.Names}} {{.Status}}")
    return [line for line in out.splitlines() if line]


def labelled_networks(instance: str) -> list[str]:
    out = docker("network", "ls", "--filter", f"label={MASTER_LABEL}={instance}", "--format", "{{.Name}}")
    return [line for line in out.splitlines() if line]


def labelled_volumes(instance: str) -> list[str]:
    out = docker("volume", "ls", "--filter", f"label={MASTER_LABEL}={instance}", "--format", "{{.Name}}")
    return [line for line in out.splitlines() if line]


def remove_labelled(instance: str) -> None:
    """Last-resort cleanup after a failed test (the assertions have already looked)."""
    for line in labelled_containers(instance):
        docker("rm", "-f", "-v", line.split()[0], check=False)
    for name in labelled_networks(instance):
        docker("network", "rm", name, check=False)


def build_never_ready_image() -> str:
    """A "postgres" image whose container runs but never listens: the healthcheck can only time out."""
    if not image_exists(NEVER_READY_IMAGE):
        dockerfile = (
            "FROM namaskah-ci/postgres:15\n"
            'ENTRYPOINT ["/usr/bin/tini", "--", "sh", "-c", "echo never listening; exec sleep 100000", "--"]\n'
        )
        subprocess.run(
            ["docker", "build", "--network", "host", "-t", NEVER_READY_IMAGE, "-"],
            input=dockerfile,
            text=True,
            check=True,
            capture_output=True,
            timeout=300,
        )
    return NEVER_READY_IMAGE


def container_peak_memory() -> dict[str, int]:
    """Current memory use (bytes) of every running container, from `docker stats`."""
    out = docker("stats", "--no-stream", "--format", "{{.Name}} {{.MemUsage}}", check=False, timeout=60)
    usage = {}
    for line in out.splitlines():
        name, _, rest = line.partition(" ")
        value = rest.split("/")[0].strip()
        number = float("".join(ch for ch in value if ch.isdigit() or ch == ".") or 0)
        unit = value.lstrip("0123456789.").strip().lower()
        factor = {"b": 1, "kib": 1024, "mib": 1024**2, "gib": 1024**3, "kb": 1000, "mb": 1000**2, "gb": 1000**3}
        usage[name] = int(number * factor.get(unit, 1))
    return usage
