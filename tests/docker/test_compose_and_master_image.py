"""The production stack: `docker-compose.yml` validates, and the master image starts a docker-mode master.

The master-image test builds `master/Dockerfile` on the local Debian base
(`namaskah-ci/base:bookworm`, as on a host without a registry), runs it with
host networking, SQLite state and the Docker socket, and checks that
`upgrade-master` ran and the web UI lists every builder on its docker-mode
workers (the job builders of the scratch repository's `.namaskah-ci.yml`, from
a job registry seeded as if its pipeline had run on main before). The image
build is a layer-cache hit after the first run.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request

import pytest

from docker_harness import docker, engine_problem, image_exists, labelled_containers, new_instance
from harness import ROOT, free_port, git, seed_registry, wait_for

MASTER_IMAGE = "namaskah-ci/master:latest"


def compose_command() -> list[str] | None:
    if (
        shutil.which("docker")
        and subprocess.run(["docker", "compose", "version"], capture_output=True, check=False).returncode == 0
    ):
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def test_compose_file_validates(tmp_path):
    command = compose_command()
    if command is None:
        pytest.skip("neither `docker compose` nor `docker-compose` is installed (apt-get install docker-compose)")
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "NAMASKAH_REPO_URL": "https://example.invalid/namaskah.git",
        "HOME": str(tmp_path),
    }
    done = subprocess.run(
        [*command, "-f", str(ROOT / "docker-compose.yml"), "config"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    rendered = done.stdout
    for expected in (
        "master/Dockerfile",
        "/var/run/docker.sock",
        "PIPELINE_WORKERS_MODE: docker",
        "db_password",
        "master-state",
        "db-data",
        "postgres",
    ):
        assert expected in rendered, expected
    assert "network_mode: host" in rendered
    # without the repository URL it refuses, naming the variable
    env.pop("NAMASKAH_REPO_URL")
    missing = subprocess.run(
        [*command, "-f", str(ROOT / "docker-compose.yml"), "config"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert missing.returncode != 0 and "NAMASKAH_REPO_URL" in missing.stderr + missing.stdout


@pytest.mark.docker
@pytest.mark.timeout(1200)
def test_master_image_runs_upgrade_master_and_serves_docker_mode_builders(tmp_path):
    problem = engine_problem()
    if problem:
        pytest.skip(problem)
    if not image_exists("namaskah-ci/base:bookworm"):
        pytest.fail("image missing: namaskah-ci/base:bookworm: build it with `make images`")
    build = subprocess.run(
        [str(ROOT / "workers" / "build_images.sh"), "--with-master"],
        capture_output=True,
        text=True,
        timeout=1100,
        check=False,
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "README").write_text("scratch\n")
    shutil.copy2(ROOT / ".namaskah-ci.yml", repo / ".namaskah-ci.yml")
    git(repo, "add", "README", ".namaskah-ci.yml")
    git(repo, "commit", "-q", "-m", "scratch")
    www_port, worker_port = free_port(), free_port()
    instance = new_instance()
    name = f"namaskah-master-{instance}"
    state = tmp_path / "state"
    secrets = tmp_path / "secrets"
    secrets.mkdir(mode=0o700)
    (state / "master").mkdir(parents=True)
    seed_registry(state / "master", repo)  # the entry point's create-master keeps it
    env = {
        "PIPELINE_WWW_PORT": str(www_port),
        "PIPELINE_WWW_BIND": "127.0.0.1",
        "PIPELINE_WORKERS_PORT": str(worker_port),
        "PIPELINE_WORKERS_INSTANCE_NAME": instance,
        "PIPELINE_REPO_URL": str(repo),
        "PIPELINE_PIPELINE_FIRST_RUN": "false",  # this test starts no pipeline; a first run would leave builds
        "PIPELINE_MASTER_BUILDBOT_URL": f"http://127.0.0.1:{www_port}/",
    }
    args = [
        "run",
        "-d",
        "--name",
        name,
        "--network",
        "host",
        # labelled like the compose stack's master: no build labels, so its own reaper leaves it alone
        "--label",
        "org.namaskah.ci.role=master",
        "--label",
        f"org.namaskah.ci.master={instance}",
        "-v",
        f"{state}:/var/lib/namaskah",
        "-v",
        f"{secrets}:/run/namaskah/secrets:ro",
        "-v",
        "/var/run/docker.sock:/var/run/docker.sock",
        "-v",
        f"{repo}:{repo}:ro",
    ]
    for key, value in env.items():
        args += ["-e", f"{key}={value}"]
    docker(*args, MASTER_IMAGE)
    try:

        def builders():
            with urllib.request.urlopen(f"http://127.0.0.1:{www_port}/api/v2/builders", timeout=5) as response:
                return json.loads(response.read())["builders"]

        try:
            found = wait_for("the containerised master's REST API", builders, 180, interval=2)
        except AssertionError as timed_out:
            log = state / "master" / "twistd.log"
            raise AssertionError(
                log.read_text(errors="replace")[-4000:] if log.exists() else "no twistd.log"
            ) from timed_out
        names = {b["name"] for b in found}
        assert {"pipeline", "test-py3.9", "integration", "container-scan"} <= names
        expected = {"local-pipeline", "docker-test-py3_9", "docker-integration", "docker-container-scan"}

        def workers():  # the web UI answers before every worker is registered
            with urllib.request.urlopen(f"http://127.0.0.1:{www_port}/api/v2/workers", timeout=5) as response:
                names = {w["name"] for w in json.loads(response.read())["workers"]}
            return names if expected <= names else None

        wait_for("the docker-mode workers", workers, 60, interval=1)
        assert (state / "master" / "buildbot.tac").exists()
        logs = subprocess.run(["docker", "logs", name], capture_output=True, text=True, timeout=60, check=False)
        assert "upgrade complete" in logs.stdout + logs.stderr, logs.stdout[-2000:] + logs.stderr[-2000:]
    finally:
        docker("rm", "-f", name, check=False)
        time.sleep(1)
    assert labelled_containers(instance) == []
