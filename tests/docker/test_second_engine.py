"""Scale-out for real: a docker-mode master with a second Docker engine in `[workers] extra_docker_hosts`.

The second engine is another dockerd on this machine (its own socket and data root: second_engine.py)
holding a copy of the Python 3.11 worker image. The scratch repository's pipeline has two jobs that
run at the same time (`engine_jobs = 1`: one job per engine). While they run, the test lists this
master's worker containers on each engine: one job's container is on each. Then the second engine is
stopped and another commit pushed: both jobs still succeed, on the first engine (a start that fails
on the stopped engine is retried on the other).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from docker_harness import MASTER_LABEL, docker, docker_env, new_instance, remove_labelled, require_engine_and_images
from harness import commit_file, git, running, start_master, wait_for
from second_engine import SecondEngine

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

IMAGE = "namaskah-ci/worker:py3.11"
BRANCH = "feature/engines"
JOBS = ("left", "right")
PIPELINE = """version: 1
python: "3.11"
requirements: []
jobs:
  left: {steps: ["sleep 8"]}
  right: {steps: ["sleep 8"]}
"""


def make_repo(path: Path) -> Path:
    path.mkdir()
    (path / ".namaskah-ci.yml").write_text(PIPELINE)
    for args in (("init", "-q", "-b", "main"), ("add", "-A"), ("commit", "-q", "-m", "two jobs")):
        git(path, *args)
    return path


def worker_containers(cli, instance: str) -> set[str]:
    out = cli(
        "ps",
        "--filter",
        f"label={MASTER_LABEL}={instance}",
        "--filter",
        "label=org.namaskah.ci.role=worker",
        "--format",
        "{{.Names}}",
        check=False,
    )
    return set(out.split())


@pytest.fixture(scope="module")
def engines(tmp_path_factory):
    require_engine_and_images()
    second = SecondEngine().start()
    second.load(IMAGE)
    tmp = tmp_path_factory.mktemp("engines")
    instance = new_instance()
    env = docker_env(instance, extra_docker_hosts=json.dumps([second.host]), engine_jobs="1")
    env["PIPELINE_REPO_BRANCHES"] = "main"
    repo = make_repo(tmp / "repo")
    try:
        with running(lambda: start_master(tmp, repo, env=env)) as master:
            yield master, second, instance, repo
    finally:
        remove_labelled(instance)
        second.remove()


def run_pipeline(master, repo: Path, watch=None) -> tuple[dict, list[dict]]:
    revision = commit_file(repo, "NOTES.md", f"{time.time()}\n", "a note", branch=BRANCH)

    def done():
        if watch:
            watch()
        for build in master.finished_builds("pipeline"):
            if (build["properties"].get("revision") or [None])[0] == revision:
                return build
        return None

    pipeline = wait_for("the pipeline", done, 600, 0.5)
    jobs = [
        b
        for job in JOBS
        for b in master.finished_builds(job)
        if (b["properties"].get("namaskah_revision") or [None])[0] == revision
    ]
    return pipeline, jobs


def worker_name(master, build: dict) -> str:
    return master.api(f"workers/{build['workerid']}")["workers"][0]["name"]


def test_jobs_spread_across_both_engines(engines):
    master, second, instance, repo = engines
    seen: dict[str, set[str]] = {"first": set(), "second": set()}

    def watch():
        seen["first"] |= worker_containers(docker, instance)
        seen["second"] |= worker_containers(second.cli, instance)

    pipeline, jobs = run_pipeline(master, repo, watch)
    assert pipeline["results"] == 0, pipeline["state_string"]
    assert sorted(b["results"] for b in jobs) == [0, 0]
    assert len(seen["first"]) == 1 and len(seen["second"]) == 1, seen
    on_second = {worker_name(master, b) for b in jobs if worker_name(master, b).endswith("-h2")}
    assert len(on_second) == 1 and any(name in next(iter(seen["second"])) for name in on_second), (on_second, seen)


def test_a_stopped_engines_jobs_go_to_the_other(engines):
    master, second, _, repo = engines
    second.stop()
    assert not second.answers()
    pipeline, jobs = run_pipeline(master, repo)
    assert pipeline["results"] == 0, pipeline["state_string"]
    succeeded = [b for b in jobs if b["results"] == 0]
    assert len(succeeded) == 2, [(worker_name(master, b), b["results"], b["state_string"]) for b in jobs]
    assert all(not worker_name(master, b).endswith("-h2") for b in succeeded)
    # a start tried on the stopped engine ended RETRY (its request ran again), never as the job's result
    assert all(b["results"] == 5 for b in jobs if b not in succeeded), [(b["results"], b["state_string"]) for b in jobs]
