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
INCARNATION_LABEL = "org.namaskah.ci.incarnation"
CACHE_VOLUME_PREFIX = "namaskah-ci-cache-"  # the job caches: meant to stay
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
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout.strip()


def engine_problem() -> str | None:
    """Why no engine can be used here, or None when one answers."""
    try:
        done = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
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
    return (
        subprocess.run(["docker", "image", "inspect", image], capture_output=True, timeout=30, check=False).returncode
        == 0
    )


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


def leak_snapshot(instance: str) -> dict[str, list[str]]:
    """What a master's instance has on the engine: its labelled containers, networks and volumes
    (the cache volumes apart: they are meant to stay)."""
    volumes = labelled_volumes(instance)
    return {
        "containers": sorted(line.split()[0] for line in labelled_containers(instance)),
        "networks": sorted(labelled_networks(instance)),
        "volumes": sorted(v for v in volumes if not v.startswith(CACHE_VOLUME_PREFIX)),
    }


def build_containers(instance: str, worker: str) -> dict[str, str]:
    """{role: container id} of the running containers of a worker's build (worker, postgres, redis)."""
    out = docker(
        "ps", "--no-trunc", "--filter", f"label={MASTER_LABEL}={instance}",
        "--filter", f"label=org.namaskah.ci.worker={worker}", "--format", '{{.ID}} {{.Label "org.namaskah.ci.role"}}',
    )  # fmt: skip
    return {role: cid for cid, _, role in (line.partition(" ") for line in out.splitlines() if line)}


def anonymous_volumes(container_ids) -> set[str]:
    """The unnamed volumes containers mount (an image's VOLUME): they must go with their containers."""
    found: set[str] = set()
    for cid in container_ids:
        out = docker("inspect", "-f", '{{range .Mounts}}{{if eq .Type "volume"}}{{.Name}} {{end}}{{end}}', cid)
        found.update(name for name in out.split() if not name.startswith(CACHE_VOLUME_PREFIX))
    return found


def existing_volumes(names) -> set[str]:
    return {name for name in names if docker("volume", "inspect", name, check=False, timeout=30)}


def container_exists(container_id: str) -> bool:
    return bool(docker("ps", "-aq", "--filter", f"id={container_id}", timeout=30))


def container_gone(container_id: str) -> bool:
    return not container_exists(container_id)


def run_fake_leftover(name: str, instance: str, incarnation: str) -> str:
    """A running container labelled as a build container of `instance`'s run `incarnation` (it sleeps)."""
    return docker(
        "run", "-d", "--network", "host", "--name", name, "--label", f"{MASTER_LABEL}={instance}",
        "--label", f"{INCARNATION_LABEL}={incarnation}", "--label", "org.namaskah.ci.role=redis",
        "namaskah-ci/redis:7", "sleep", "3600",
    )  # fmt: skip


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
