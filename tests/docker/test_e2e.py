"""Docker mode end to end: a real master, a real Docker engine, the images from `make images`.

- One commit runs every check in its own container: `test-py3.9` and
  `test-py3.11` report their Python from inside the container, `integration`
  and `migration-test` pass against their PostgreSQL/Redis containers, and
  afterwards no container or network of that master remains.
- A service that never gets ready ends its build within the bound, saying
  why, and leaves nothing behind.
- Killing a worker container mid-build ends that build within 15 s (RETRY,
  the reason in its summary), and its service containers are removed
  (more faults, and the leak counts: test_docker_faults.py).
- Issue 23's combined fixture (install_projects' uv `backend/` reading
  POSTGRES_*) passes in its Python 3.11 container as by hand.

They skip only when no Docker engine answers (scripts/start_docker.sh starts one).
Commits go to a feature branch, so no deploy is ever triggered.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import threading
import time
from pathlib import Path

import pytest

from docker_harness import (
    build_never_ready_image,
    container_gone,
    docker,
    docker_env,
    labelled_containers,
    labelled_networks,
    labelled_volumes,
    new_instance,
    remove_labelled,
    require_engine_and_images,
)
from harness import (
    CHECK_BUILDERS,
    ROOT,
    commit_file,
    git,
    make_fixture_repo,
    make_service_repo,
    running,
    start_master,
    wait_for,
    wait_poller_ready,
)

pytestmark = [pytest.mark.docker, pytest.mark.e2e, pytest.mark.timeout(2400)]

CHECKS = CHECK_BUILDERS
SUCCESS, FAILURE, EXCEPTION, RETRY = 0, 2, 4, 5
BRANCH = "feature/docker-e2e"
ARTIFACTS = ROOT / "test-artifacts" / "docker"
HELPERS = ROOT / "master" / "namaskah_ci" / "helpers"  # what LoadJob copies into each build


def tools_missing() -> dict[str, str]:
    """Tools the tools image was built without ({tool: reason}), from its own record."""
    out = docker(
        "run",
        "--rm",
        "--network",
        "host",
        "--entrypoint",
        "sh",
        "namaskah-ci/tools:latest",
        "-c",
        "cat /etc/namaskah-tools-missing 2>/dev/null || true",
        timeout=120,
    )
    return {line.split(":", 1)[0]: line for line in out.splitlines() if ":" in line}


def build_text(master, build: dict) -> str:
    texts = [f"build: {build['state_string']}"]
    for step in master.steps(build):
        texts.append(f"{step['name']}: {step['state_string']}")
        for log in master.api(f"steps/{step['stepid']}/logs")["logs"]:
            texts.append(master.log_text(log["logid"]))
    return "\n".join(texts)


def service_repo(tmp_path: Path) -> Path:
    """A scratch repository with the reference service (from NAMASKAH_SERVICE_SOURCE, default this checkout)."""
    source = Path(os.environ.get("NAMASKAH_SERVICE_SOURCE", ROOT))
    if not (source / "app").is_dir():
        pytest.skip(f"the reference service (app/) is not in {source}")
    if source == ROOT:
        return make_service_repo(tmp_path / "repo")
    repo = tmp_path / "repo"
    shutil.copytree(source, repo, ignore=shutil.ignore_patterns(".git", "__pycache__", "*.pyc"))
    for args in (("init", "-q", "-b", "main"), ("add", "-A"), ("commit", "-q", "-m", "reference service")):
        git(repo, *args)
    return repo


class MemoryPeaks:
    """Samples each container's peak memory (cgroup v1 max_usage) while a test runs; best effort."""

    def __init__(self, instance: str):
        self.instance = instance
        self.peaks: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self):
        root = Path("/sys/fs/cgroup/memory/docker")
        names: dict[str, str] = {}
        while not self._stop.wait(1.0):
            try:
                out = docker(
                    "ps",
                    "--no-trunc",
                    "--filter",
                    f"label=org.namaskah.ci.master={self.instance}",
                    "--format",
                    "{{.ID}} {{.Names}}",
                    check=False,
                    timeout=20,
                )
            except Exception:
                continue
            for line in out.splitlines():
                cid, _, name = line.partition(" ")
                names[cid] = name
                path = root / cid / "memory.max_usage_in_bytes"
                try:
                    value = int(path.read_text())
                except (OSError, ValueError):
                    continue
                key = name.split("-h")[0]
                self.peaks[key] = max(self.peaks.get(key, 0), value)


@pytest.fixture
def docker_master(tmp_path):
    require_engine_and_images()
    instance = new_instance()
    repo = service_repo(tmp_path)
    started = []

    def start(only: str | None = None, **workers):
        if only:  # one worker per builder: the tests name the one whose containers they look at
            workers.setdefault("engine_jobs", "1")
        env = docker_env(instance, **workers)
        if only:  # the pipeline runs this check alone
            env["PIPELINE_CHECKS_DISABLED"] = json.dumps([c for c in CHECKS if c != only])
        master = start_master(tmp_path, repo, env=env)
        started.append(master)
        wait_poller_ready(master)
        return master

    try:
        yield start, repo, instance
    finally:
        for master in started:
            try:
                master.wait_idle(600, 3)
            finally:
                master.stop()
        leftovers = labelled_containers(instance)
        remove_labelled(instance)
        assert not leftovers, f"containers left behind: {leftovers}"


def test_one_commit_runs_every_check_in_containers(docker_master):
    start, repo, instance = docker_master
    master = start(docker_socket_branches=json.dumps([BRANCH]))  # container-scan's engine on this branch
    missing = tools_missing()
    started = time.monotonic()
    with MemoryPeaks(instance) as memory:
        revision = commit_file(repo, "app/NOTES.md", "docker e2e\n", "docs: a note", branch=BRANCH)
        master.pipeline_of(revision, 1800)
    elapsed = time.monotonic() - started
    results, texts = {}, {}
    for check in CHECKS:
        [build] = master.builds_of(check, revision)
        results[check] = build["results"]
        texts[check] = build_text(master, build)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "pipeline-run.json").write_text(
        json.dumps({"seconds": round(elapsed), "results": results, "memory_peak_bytes": memory.peaks}, indent=2)
    )
    needs = {"container-scan": "trivy", "secrets-scan": "gitleaks"}
    for check in CHECKS:
        tool = needs.get(check)
        if tool in missing:
            # the image says why the tool is absent, and the job fails with that message
            assert results[check] == FAILURE, f"{check}: expected a failure without {tool}\n{texts[check][-3000:]}"
            assert missing[tool] in texts[check], texts[check][-3000:]
        elif check == "security" and results[check] != SUCCESS:
            # as in local mode: only pip-audit may fail, and only when PyPI's JSON API is out of reach
            [build] = master.builds_of(check, revision)
            steps = {s["name"]: s for s in master.steps(build)}
            assert steps["bandit"]["results"] == SUCCESS and steps["bandit sarif"]["results"] == SUCCESS, texts[check]
            assert steps["pip-audit"]["results"] == FAILURE, texts[check][-3000:]
            assert "could not be audited" in texts[check] or "vulnerab" in texts[check], texts[check][-3000:]
        else:
            assert results[check] == SUCCESS, f"{check} failed:\n{texts[check][-5000:]}"
    # the worker's password never reaches a build command's environment (buildbot.tac drops it)
    for check in CHECKS:
        assert "WORKERPASS" not in texts[check], check
    # the matrix ran in the right containers: pytest prints the interpreter it runs on
    assert "Python 3.9." in texts["test-py3.9"] and "Python 3.11." not in texts["test-py3.9"]
    assert "Python 3.11." in texts["test-py3.11"]
    # services came from containers; their URLs (passwords) are in the worker container only, never a property
    for check in ("integration", "migration-test"):
        [build] = master.builds_of(check, revision)
        assert not {"DATABASE_URL", "REDIS_URL"} & set(build["properties"]), check
    # nothing of the build remains: no container, no network; only the labelled cache volumes
    master.wait_idle(600, 3)
    wait_for("containers removed", lambda: not labelled_containers(instance), 60)
    assert labelled_networks(instance) == []
    assert all(name.startswith("namaskah-ci-cache-py") for name in labelled_volumes(instance))


def test_a_service_that_never_gets_ready_fails_the_build_within_the_bound(docker_master):
    start, repo, instance = docker_master
    image = build_never_ready_image()
    # a container an earlier run of this master left behind: removed when the master starts
    leftover = docker(
        "run", "-d", "--network", "host", "--name", f"{instance}-leftover",
        "--label", f"org.namaskah.ci.master={instance}", "--label", "org.namaskah.ci.incarnation=crashed-run",
        "namaskah-ci/redis:7", "redis-server", "--port", "0",
    )  # fmt: skip
    master = start(only="migration-test", images=json.dumps({"postgres": image}), service_ready_timeout="10")
    wait_for("the leftover container to be removed", lambda: not docker("ps", "-aq", "--filter", f"id={leftover}"), 60)
    revision = commit_file(repo, "app/NOTES.md", "never ready\n", "docs: never ready", branch=BRANCH)
    [build] = wait_for(
        "the migration-test build",
        lambda: master.builds_of("migration-test", revision),
        600,
        interval=2,
    )
    text = build_text(master, build)
    assert build["results"] in (EXCEPTION, FAILURE), text[-3000:]
    assert "did not accept connections" in text and "within 10s" in text, text[-3000:]
    assert build["complete_at"] - build["started_at"] < 10 + 60, "the readiness bound was not kept"
    wait_for("containers removed", lambda: not labelled_containers(instance), 60)


PREPARATION = ("worker_preparation", "job definition")


def test_killing_the_worker_container_mid_build_ends_the_build_and_cleans_up(docker_master):
    start, repo, instance = docker_master
    master = start(only="integration")
    commit_file(repo, "app/NOTES.md", "kill\n", "docs: kill the worker", branch=BRANCH)

    def running_integration():
        builds = [b for b in master.builds("integration") if not b["complete"]]
        if not builds:
            return None
        steps = master.steps(builds[0])
        # the job's own steps have started (the worker is up, LoadJob has written the job's directory)
        return builds[0] if any(s["started_at"] and s["name"] not in PREPARATION for s in steps) else None

    build = wait_for("an integration build that is running its job's steps", running_integration, 900, interval=1)
    containers = docker(
        "ps",
        "--filter",
        f"label=org.namaskah.ci.master={instance}",
        "--filter",
        "label=org.namaskah.ci.worker=docker-integration",
        "--format",
        '{{.ID}} {{.Label "org.namaskah.ci.role"}}',
    ).splitlines()
    assert any(line.endswith(" postgres") for line in containers), containers
    [worker_id] = [line.split()[0] for line in containers if line.endswith(" worker")]
    docker("kill", worker_id)
    killed_at = time.time()
    killed = wait_for(
        "the killed build to end",
        lambda: [b for b in master.builds("integration") if b["buildid"] == build["buildid"] and b["complete"]],
        60,
        interval=0.5,
    )[0]
    # Buildbot retries a build whose worker it lost; the summary says why ("lost connection", and
    # the container's exit code when the container watch saw it first), within seconds
    assert killed["results"] == RETRY, killed
    summary = killed["state_string"]
    assert "lost connection" in summary or "worker container exited (code 137)" in summary, summary
    assert killed["complete_at"] - killed_at <= 15, f"{killed['complete_at'] - killed_at:.0f}s: {summary}"
    # the build's service containers went with it (a retried build may have started its own since)
    build_key_containers = [line for line in containers if line.split()[0] != worker_id]
    for line in build_key_containers:
        cid = line.split()[0]
        wait_for(f"container {cid} removed", functools.partial(container_gone, cid), 60)


def test_container_scan_builds_the_application_image_through_the_engine(tmp_path):
    """What the container-scan job does before trivy: `docker build` from inside a tools container."""
    require_engine_and_images()
    repo = service_repo(tmp_path)
    if not (repo / "Dockerfile").exists():
        pytest.skip("the reference service has no Dockerfile yet")
    tag = f"namaskah-app:test-{new_instance()}"
    base = docker_env("unused")["PIPELINE_WORKERS_APP_BASE_IMAGE"]
    try:
        out = docker(
            "run", "--rm", "--network", "host", "-v", "/var/run/docker.sock:/var/run/docker.sock",
            "-v", f"{repo}:/src", "-w", "/src", "-e", f"APP_BASE_IMAGE={base}",
            "-v", f"{HELPERS}:/opt/namaskah-ci/helpers:ro",  # a build gets them copied in (LoadJob)
            "-e", "PIP_CERT_FILE=/etc/namaskah/ca/ca-bundle.crt",
            "--entrypoint", "python3", "namaskah-ci/tools:latest",
            "/opt/namaskah-ci/helpers/ci_container_scan.py", "build", "--tag", tag,
            timeout=900,
        )  # fmt: skip
        assert "docker build --network host" in out, out[-2000:]
        docker("image", "inspect", tag)  # fails the test when the image was not built
    finally:
        docker("rmi", "-f", tag, check=False)


def test_a_uv_backend_reading_postgres_variables_passes_in_its_container(tmp_path):
    """Issue 23's combined fixture in docker mode: `tests/fixtures/install_projects`' `uv-tests` job (its
    `backend/` with uv.lock and no pytest configuration, `install: {uv: {}}` on Python 3.11, the app
    reading POSTGRES_* of its PostgreSQL container, a coverage report with its own min) passes, with the
    counts tests/e2e/test_install.py gets by hand (4 tests, none failing; `-k read`: 1 of them)."""
    require_engine_and_images()
    instance = new_instance()
    repo = make_fixture_repo(tmp_path / "repo", "install_projects")
    pipeline = (repo / ".namaskah-ci.yml").read_text()
    (repo / ".namaskah-ci.yml").write_text(pipeline.split("  poetry-tests:")[0])  # the uv job alone
    git(repo, "commit", "-q", "-am", "the uv job alone")
    try:
        with running(lambda: start_master(tmp_path, repo, env=docker_env(instance)), idle_timeout=600) as master:
            revision = commit_file(repo, "README", "uv in docker\n", "a push", branch=BRANCH)
            master.pipeline_of(revision, 1800)
            [build] = wait_for("the uv-tests build", lambda: master.builds_of("uv-tests", revision), 60)
            text = build_text(master, build)
    finally:
        leftovers = labelled_containers(instance)
        remove_labelled(instance)
    assert build["results"] == SUCCESS, text[-5000:]
    assert re.search(r"^4 passed in ", text, re.M), text[-5000:]  # the JUnit step's pytest
    assert re.search(r"^1 passed, 3 deselected in ", text, re.M), text[-5000:]  # `uv run pytest -k read`
    assert "uv sync --frozen" in text and float(build["properties"]["coverage"][0]) >= 15, text[-5000:]
    assert not leftovers, f"containers left behind: {leftovers}"
