"""Worker faults in docker mode: builds end within a bounded time, saying why, and nothing leaks.

A real master in docker mode builds a scratch repository whose one job
(`svc`: PostgreSQL and Redis service containers, no virtualenv) waits in its
step until the test releases it (a file in the repository, which the worker
container mounts read-only) or 90 s pass. Mid-step:

- a service container is `docker kill`ed: the build ends (EXCEPTION) within
  15 s, its summary naming the service and its exit code;
- the worker container is `docker kill`ed: the build ends (RETRY, as Buildbot
  does for a lost worker) within 15 s with the reason in its summary, and its
  services are removed;
- in both, the labelled containers, networks and volumes of the master's
  instance are the same before and after (cache volumes stay; anonymous
  volumes go with their containers), and so is the master's TMPDIR;
- the master is SIGKILLed mid-build and restarted: it removes its own
  leftovers (the build's containers, a fake one) and not another instance's.

Timings go to test-artifacts/docker/faults-*.json. They skip only when no
Docker engine answers (scripts/start_docker.sh starts one).
"""

from __future__ import annotations

import functools
import json
import os
import time
from pathlib import Path

import pytest

from docker_harness import (
    anonymous_volumes,
    build_containers,
    container_exists,
    container_gone,
    docker,
    docker_env,
    existing_volumes,
    labelled_containers,
    leak_snapshot,
    new_instance,
    remove_labelled,
    require_engine_and_images,
    run_fake_leftover,
)
from harness import ROOT, RunningMaster, commit_file, git, start_master, wait_for, wait_poller_ready

pytestmark = [pytest.mark.docker, pytest.mark.reliability, pytest.mark.timeout(900)]

SUCCESS, EXCEPTION, RETRY = 0, 4, 5
BRANCH = "feature/faults"
WORKER = "docker-svc"  # the latent worker of the `svc` job builder
BOUND = 15  # seconds from a kill to the end of the build
ARTIFACTS = ROOT / "test-artifacts" / "docker"
PIPELINE = """version: 1
python: "3.11"
requirements: []
jobs:
  svc:
    timeout: 10
    services: [postgres, redis]
    steps:
      - name: wait
        run: "for i in $(seq 90); do [ -e {release} ] && break; sleep 1; done"
"""


def fault_repo(path: Path) -> tuple[Path, Path]:
    """A repository with the one-job pipeline; the file whose existence ends the job's wait."""
    path.mkdir()
    release = path / ".release"  # untracked: seen through the worker container's read-only mount
    (path / ".namaskah-ci.yml").write_text(PIPELINE.format(release=release))
    (path / "README.md").write_text("faults\n")
    for args in (("init", "-q", "-b", "main"), ("add", "-A"), ("commit", "-q", "-m", "one job")):
        git(path, *args)
    return path, release


class FaultMaster:
    """A docker-mode master on the scratch repository, with what the tests compare before and after."""

    def __init__(self, tmp_path: Path):
        self.tmp_path = tmp_path
        self.instance = new_instance()
        self.repo, self.release = fault_repo(tmp_path / "repo")
        self.master_tmp = tmp_path / "master-tmp"  # the master's TMPDIR
        self.master_tmp.mkdir()
        self.master: RunningMaster | None = None

    def start(self):
        # one worker per builder (engine_jobs = 1): the one whose containers the tests kill
        env = {**docker_env(self.instance, engine_jobs="1"), "TMPDIR": str(self.master_tmp)}
        self.master = master = start_master(self.tmp_path, self.repo, env=env)
        wait_poller_ready(master)
        return master

    def started(self) -> RunningMaster:
        assert self.master is not None, "start() the master first"
        return self.master

    def snapshot(self) -> dict:
        return {**leak_snapshot(self.instance), "master_tmp": sorted(os.listdir(self.master_tmp))}

    def build_in_its_step(self, timeout: float = 600) -> dict:
        """Commit, and wait until the `svc` build runs its `wait` step (the containers are all up)."""
        commit_file(self.repo, "NOTES.md", f"{time.time()}\n", "docs: a note", branch=BRANCH)

        def waiting():
            master = self.started()
            for build in master.builds("svc"):
                if not build["complete"] and any(
                    s["name"] == "wait" and s["started_at"] and not s["complete"] for s in master.steps(build)
                ):
                    return build
            return None

        return wait_for("an svc build in its wait step", waiting, timeout, interval=1)

    def wait_ended(self, build: dict, timeout: float = 120) -> dict:
        def ended():
            [found] = self.started().api(f"builds/{build['buildid']}")["builds"]
            return found if found["complete"] else None

        return wait_for(f"build {build['buildid']} to end", ended, timeout, interval=0.25)

    def idle(self, timeout: float = 300) -> None:
        self.started().wait_idle(timeout, 2)


@pytest.fixture
def faults(tmp_path):
    require_engine_and_images()
    fm = FaultMaster(tmp_path)
    try:
        yield fm
    finally:
        fm.release.touch()  # any build still waiting ends now
        try:
            if fm.master is not None and fm.master.process.poll() is None:
                fm.idle()
        finally:
            if fm.master is not None:
                fm.master.stop()
            leftovers = labelled_containers(fm.instance)
            remove_labelled(fm.instance)
        assert not leftovers, f"containers left behind: {leftovers}"


def kill(container_id: str) -> tuple[float, float]:
    """`docker kill` (SIGKILL: exit code 137); when it returned, in wall-clock and monotonic seconds."""
    docker("kill", container_id)
    return time.time(), time.monotonic()


def record(name: str, data: dict) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / f"faults-{name}.json").write_text(json.dumps(data, indent=2))
    print(f"{name}: {data}")


def assert_nothing_leaked(fm: FaultMaster, before: dict, containers: dict, anonymous: set[str]) -> None:
    for cid in containers.values():
        wait_for(f"container {cid[:12]} removed", functools.partial(container_gone, cid), 60)
    fm.idle()
    wait_for("the instance's containers removed", lambda: not labelled_containers(fm.instance), 60)
    assert fm.snapshot() == before
    assert existing_volumes(anonymous) == set(), "anonymous volumes of removed containers remain"


@pytest.mark.parametrize("service", ["postgres", "redis"])
def test_a_killed_service_container_ends_the_build_within_the_bound_naming_it(faults, service):
    master = faults.start()
    before = faults.snapshot()
    build = faults.build_in_its_step()
    containers = build_containers(faults.instance, WORKER)
    assert sorted(containers) == ["postgres", "redis", "worker"], containers
    anonymous = anonymous_volumes(containers.values())
    killed_at, killed_mono = kill(containers[service])
    ended = faults.wait_ended(build, timeout=90)
    observed = time.monotonic() - killed_mono
    summary = ended["state_string"]
    record(f"{service}-kill", {"seconds_to_end": round(observed, 1), "results": ended["results"], "summary": summary})
    assert f"service container {service} exited (code 137) during the build" in summary, summary
    assert ended["results"] == EXCEPTION, ended
    assert ended["complete_at"] - killed_at <= BOUND + 1 and observed <= BOUND, f"{observed:.1f}s: {summary}"
    assert "retry" not in summary and not [b for b in master.builds("svc") if b["buildid"] != build["buildid"]]
    assert_nothing_leaked(faults, before, containers, anonymous)


def test_a_killed_worker_container_ends_the_build_within_the_bound_and_takes_its_services(faults):
    master = faults.start()
    before = faults.snapshot()
    build = faults.build_in_its_step()
    containers = build_containers(faults.instance, WORKER)
    anonymous = anonymous_volumes(containers.values())
    killed_at, killed_mono = kill(containers["worker"])
    ended = faults.wait_ended(build, timeout=90)
    observed = time.monotonic() - killed_mono
    summary = ended["state_string"]
    # the services go as soon as the build has ended, before its retry starts
    for role in ("postgres", "redis"):
        wait_for(f"the killed build's {role} removed", functools.partial(container_gone, containers[role]), 30, 0.5)
    removed_after = time.monotonic() - killed_mono
    faults.release.touch()  # the retry (RETRY: the request runs again) needs not wait
    record(
        "worker-kill",
        {
            "seconds_to_end": round(observed, 1),
            "seconds_to_services_removed": round(removed_after, 1),
            "results": ended["results"],
            "summary": summary,
        },
    )
    assert ended["results"] == RETRY, ended
    assert "lost connection" in summary or "worker container exited (code 137)" in summary, summary
    assert ended["complete_at"] - killed_at <= BOUND + 1 and observed <= BOUND, f"{observed:.1f}s: {summary}"
    [retried] = wait_for(
        "the retried build to end",
        lambda: [b for b in master.builds("svc") if b["buildid"] != build["buildid"] and b["complete"]],
        300,
        interval=2,
    )
    assert retried["results"] == SUCCESS, retried
    assert_nothing_leaked(faults, before, containers, anonymous)


def test_a_restarted_master_reaps_only_its_own_instances_leftovers(faults):
    master = faults.start()
    faults.build_in_its_step()
    old = build_containers(faults.instance, WORKER)
    assert sorted(old) == ["postgres", "redis", "worker"], old
    master.kill()  # SIGKILL mid-build: the build's containers stay behind
    assert all(container_exists(cid) for cid in old.values())
    other = new_instance()
    other_id = run_fake_leftover(f"{other}-leftover", other, "other-run")
    own_id = run_fake_leftover(f"{faults.instance}-leftover", faults.instance, "crashed-run")
    try:
        assert docker("inspect", "-f", "{{.State.Running}}", other_id) == "true"
        master.launch()  # the same master, restarted: another incarnation
        leftovers = [*old.values(), own_id]
        wait_for("its own leftovers removed", lambda: not any(container_exists(cid) for cid in leftovers), 90, 0.5)
        reaped = wait_for(
            "the master's log of what it reaped",
            lambda: [line for line in master.twistd_log().splitlines() if "removed leftovers" in line],
            30,
        )
        assert f"{faults.instance}-leftover" in reaped[0] and other not in reaped[0], reaped
        assert container_exists(other_id), "another instance's container was removed"
        assert docker("inspect", "-f", "{{.State.Running}}", other_id) == "true"
    finally:
        docker("rm", "-f", "-v", other_id, check=False)
        docker("rm", "-f", "-v", own_id, check=False)
    faults.release.touch()  # the interrupted build's request runs again on the restarted master
    faults.idle()
