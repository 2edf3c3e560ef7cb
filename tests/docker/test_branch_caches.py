"""Docker mode: no branch writes a cache volume another branch's jobs read (workers/docker/caches.py).

- The plan (no engine): the default branch's builds mount the Python's
  volume; every other ref (a branch, a pull request's merge ref) its own,
  seeded from the default branch's; a fork's is never seeded; job containers
  run without CAP_NET_RAW.
- The worker against the fake engine: a new branch volume is seeded by a
  container that mounts the default branch's volume read-only; a failed or
  interrupted seed leaves an empty volume; unused branch volumes are removed
  (by age, then beyond the cap), never one in use nor the default branch's.
- A real engine (`-m docker`): what the plans mount, in real containers: a
  branch's job writes a `.pth` into the virtualenv in its /cache and the
  default branch's next job, running that virtualenv's Python, does not run
  it (today's code: "POISONED" printed by main's job).
- A real master in docker mode (`-m docker -m e2e`): the same through
  builds: main, then a branch that plants the `.pth`, then main again.
"""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

import pytest
from buildbot.process.properties import Properties
from twisted.internet import defer

from namaskah_ci.workers.docker import caches as docker_caches
from namaskah_ci.workers.docker import config as dc
from namaskah_ci.workers.docker import services as ds
from pipeline_support import entry_of
from unit_support import REGISTRY, WorkerTestBase, build_with, docker_settings

VOLUME_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")  # what Docker accepts


def build_props(branch: str | None, fork: bool = False) -> Properties:
    props = Properties()
    if branch is not None:
        props.setProperty("branch", branch, "test")
    if fork:
        props.setProperty("pr_fork", True, "test")
    return props


# --- the plan -----------------------------------------------------------------------------------


def test_each_ref_gets_its_own_volume_seeded_from_the_default_branchs():
    values = dc._JobValues(docker_settings(), entry_of(REGISTRY, "lint"))
    main = values.cache(build_props("main"))
    assert main == docker_caches.CachePlan("namaskah-ci-cache-py3.11", ref="main")
    assert values.cache(build_props("refs/heads/main")) == main
    plans = {ref: values.cache(build_props(ref)) for ref in ("feature/a", "feature-a", "refs/pull/3/merge", "")}
    assert len({plan.volume for plan in plans.values()} | {main.volume}) == 5
    for ref, plan in plans.items():
        assert plan.branch and plan.seed == "namaskah-ci-cache-py3.11", ref
        assert plan.volume.startswith("namaskah-ci-cache-py3.11-") and VOLUME_NAME.match(plan.volume), plan
    assert values.volumes(build_props("feature/a"))[0] == f"{plans['feature/a'].volume}:/cache"
    assert values.cache(build_props(None)) == plans[""]  # no branch: never the default branch's volume
    fork = values.cache(build_props("refs/pull/3/merge", fork=True))
    assert fork.seed == "" and fork.volume.endswith("-untrusted") and fork.volume != plans["refs/pull/3/merge"].volume
    # another Python: another volume, seeded from that Python's
    assert docker_caches.plan_for("3.9", "feature/a", "main", False).seed == "namaskah-ci-cache-py3.9"


def test_no_branch_build_mounts_the_default_branchs_volume_and_no_job_has_raw_sockets():
    values = dc._JobValues(docker_settings(), entry_of(REGISTRY, "container-scan"))
    for ref in ("develop", "feature/x", "refs/pull/9/merge"):
        mounts = values.volumes(build_props(ref))
        assert not [m for m in mounts if m.startswith("namaskah-ci-cache-py3.11:")], (ref, mounts)
    assert values.hostconfig(build_props("main"))["cap_drop"] == ["NET_RAW"]


# --- the worker against the fake engine ---------------------------------------------------------


class BranchVolumeTests(WorkerTestBase):
    @defer.inlineCallbacks
    def setUp(self):  # type: ignore[override]  # trial waits for the Deferred a setUp returns
        yield super().setUp()
        directory = self.mktemp()
        os.makedirs(directory)
        self.record = docker_caches.CacheRecord(os.path.join(directory, docker_caches.RECORD_FILE))

    @defer.inlineCallbacks
    def worker(self, builder="test-py3.11"):
        worker = yield self.make_worker(builder)
        worker.cache_record = self.record
        return worker

    @staticmethod
    def build(branch: str):
        return build_with(branch=branch)

    def seeds(self):
        return [c for c in self.engine.call_args_create_container if c["labels"][ds.LABEL_ROLE] == "cache-seed"]

    @defer.inlineCallbacks
    def test_a_new_branch_volume_is_seeded_read_only_from_the_default_branchs_then_mounted_alone(self):
        worker = yield self.worker()
        yield worker.start_instance(self.build("main"))
        yield worker.stop_instance()
        self.assertEqual(self.seeds(), [])  # the default branch's volume is never seeded
        yield worker.start_instance(self.build("feature/x"))
        [seed] = self.seeds()
        branch = docker_caches.branch_volume("3.11", "feature/x")
        self.assertEqual(seed["entrypoint"], ["cp"])
        self.assertEqual(seed["command"], ["-a", "/seed/.", "/cache/"])
        self.assertEqual(seed["host_config"]["binds"], ["namaskah-ci-cache-py3.11:/seed:ro", f"{branch}:/cache:rw"])
        self.assertEqual(seed["host_config"]["network_mode"], "none")
        self.assertEqual(self.engine.host_configs[-1]["binds"], [f"{branch}:/cache"])  # the job's container
        self.assertEqual(self.engine.host_configs[-1]["cap_drop"], ["NET_RAW"])
        labels = self.engine.volume_store[branch]["Labels"]
        self.assertEqual((labels[ds.LABEL_ROLE], labels[docker_caches.LABEL_REF]), ("branch-cache", "feature/x"))
        self.assertEqual(self.record.get(worker.docker_host, branch)["seeded"], True)
        self.assertEqual([c["Labels"][ds.LABEL_ROLE] for c in self.engine.running()], ["worker"])  # seed removed
        yield worker.stop_instance()
        yield worker.start_instance(self.build("feature/x"))  # an existing branch volume: no seed again
        self.assertEqual(len(self.seeds()), 1)
        yield worker.stop_instance()

    @defer.inlineCallbacks
    def test_a_failed_seed_leaves_an_empty_volume_and_an_interrupted_one_is_made_again(self):
        worker = yield self.worker()
        self.engine.create_volume("namaskah-ci-cache-py3.11", labels={})
        self.engine.wait_status = 1
        yield worker.start_instance(self.build("feature/x"))
        yield worker.stop_instance()
        branch = docker_caches.branch_volume("3.11", "feature/x")
        self.assertIn(branch, self.engine.volume_store)  # made again, empty
        self.assertEqual(self.record.get(worker.docker_host, branch)["seeded"], True)
        self.engine.wait_status = 0
        self.record.update(worker.docker_host, branch, seeded=False)  # as a crash mid-copy leaves it
        yield worker.start_instance(self.build("feature/x"))
        yield worker.stop_instance()
        self.assertEqual(len(self.seeds()), 2)

    def test_unused_branch_volumes_go_by_age_then_beyond_the_cap_never_one_in_use(self):
        engine, record, host, now = self.engine, self.record, "unix:///x.sock", 2_000_000_000.0
        mine = {ds.LABEL_MASTER: "m", ds.LABEL_ROLE: "branch-cache"}
        for index in range(30):  # b0 used most recently ... b29 least
            engine.create_volume(f"b{index}", labels=mine)
            record.update(host, f"b{index}", used=now - index * 3600)
        engine.create_volume("old", labels=mine)
        record.update(host, "old", used=now - 15 * 86400)
        engine.create_volume("old-in-use", labels=mine)
        record.update(host, "old-in-use", used=now - 20 * 86400)
        engine.volumes_in_use.add("old-in-use")
        engine.create_volume("main", labels={ds.LABEL_MASTER: "m", ds.LABEL_ROLE: "cache"})
        engine.create_volume("other-master", labels={ds.LABEL_MASTER: "n", ds.LABEL_ROLE: "branch-cache"})
        removed = docker_caches.prune(engine, "m", record, host, now=now, keep="b29", cap=24)
        self.assertEqual(sorted(removed), sorted(["old"] + [f"b{i}" for i in range(23, 29)]))  # 24 kept with b29
        self.assertEqual(
            sorted(v for v in engine.volume_store if v.startswith("b")), sorted([f"b{i}" for i in range(23)] + ["b29"])
        )
        for kept in ("old-in-use", "main", "other-master"):
            self.assertIn(kept, engine.volume_store)
        self.assertEqual(record.get(host, "old"), {})


# --- a real engine ------------------------------------------------------------------------------


@pytest.mark.docker
def test_a_branch_jobs_pth_in_its_cache_never_runs_in_the_default_branchs_next_job():
    """What the worker mounts for main's job, then a branch's, then main's again, in real containers."""
    import dataclasses

    import docker as docker_py

    from docker_harness import docker, require_engine_and_images

    require_engine_and_images()
    # a Python of this test only: its volumes are never the real caches
    entry = dataclasses.replace(entry_of(REGISTRY, "lint"), python=f"3.11-t{uuid.uuid4().hex[:8]}")
    values = dc._JobValues(docker_settings(), entry)
    client = docker_py.APIClient(base_url="unix:///var/run/docker.sock", version="auto")
    labels = {ds.LABEL_MASTER: f"test-{uuid.uuid4().hex[:8]}", ds.LABEL_ROLE: "cache-seed"}
    image = "namaskah-ci/worker:py3.11"
    used: set[str] = set()

    def job(branch: str, script: str) -> str:
        props = build_props(branch)
        docker_caches.prepare(client, values.cache(props), image, labels, None, "local")  # start_instance's
        mounts = [arg for volume in values.volumes(props) for arg in ("-v", volume)]
        used.update(volume.split(":")[0] for volume in values.volumes(props))
        return docker(
            "run",
            "--rm",
            "--network",
            "none",
            "--cap-drop",
            "NET_RAW",
            "--entrypoint",
            "/usr/bin/tini",
            *mounts,
            image,
            "--",
            "sh",
            "-c",
            script,
            timeout=300,
        )

    venv = "/cache/venvs/v"
    plant = (
        f"echo 'import sys; print(\"POISONED by feature/poison\")' > "
        f"$({venv}/bin/python -c 'import site; print(site.getsitepackages()[0])')/zz.pth; echo planted"
    )
    try:
        assert job("main", f"python3 -m venv {venv} && echo built") == "built"
        assert job("feature/poison", f"test -x {venv}/bin/python && echo seeded && {plant}") == "seeded\nplanted"
        assert "POISONED" in job("feature/poison", f"{venv}/bin/python -c 'pass'")  # the branch's own job
        assert job("main", f"{venv}/bin/python -c 'print(\"clean\")'") == "clean"
    finally:
        for volume in used:
            docker("volume", "rm", "-f", volume, check=False)
        client.close()


# --- a real master ------------------------------------------------------------------------------

E2E_PIPELINE = """version: 1
python: "3.11"
requirements: [requirements.txt]
jobs:
  probe:
    steps:
      - name: plant
        run: |
          if [ "$NAMASKAH_CI_BRANCH" != main ]; then
            site=$(python -c 'import site; print(site.getsitepackages()[0])')
            echo 'import sys; print("POISONED-BY-BRANCH", file=sys.stderr)' > "$site/zz_poison.pth"
            echo planted in "$site"
          fi
      - {name: run python, run: "python -c 'print(\\"ran\\")'"}
"""


@pytest.mark.docker
@pytest.mark.e2e
@pytest.mark.timeout(1200)
def test_through_builds_a_branch_cannot_poison_mains_next_job(tmp_path: Path):
    from docker_harness import (
        docker,
        docker_env,
        labelled_containers,
        new_instance,
        remove_labelled,
        require_engine_and_images,
    )
    from harness import commit_file, git, start_master, wait_for, wait_poller_ready

    require_engine_and_images()
    instance = new_instance()
    branch = f"poison-{uuid.uuid4().hex[:8]}"
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / ".namaskah-ci.yml").write_text(E2E_PIPELINE)
    (repo / "requirements.txt").write_text(f"# a virtualenv of this test only: {uuid.uuid4().hex}\n")
    for args in (("init", "-q", "-b", "main"), ("add", "-A"), ("commit", "-q", "-m", "probe")):
        git(repo, *args)
    master = start_master(tmp_path, repo, env=docker_env(instance, engine_jobs="1"))
    try:
        wait_poller_ready(master)

        def build_of(revision: str) -> dict:
            def done():
                found = [
                    b for b in master.finished_builds("probe") if b["properties"].get("revision", [None])[0] == revision
                ]
                return found[-1] if found else None

            return wait_for(f"the probe build of {revision[:8]}", done, 600, interval=2)

        first = commit_file(repo, "a.txt", "1\n", "main: a build")
        texts = {"main 1": master.build_text(build_of(first))}
        poisoned = commit_file(repo, "b.txt", "2\n", "branch: plants a .pth", branch=branch)
        texts["branch"] = master.build_text(build_of(poisoned))
        git(repo, "checkout", "-q", "main")
        second = commit_file(repo, "c.txt", "3\n", "main: the next build")
        texts["main 2"] = master.build_text(build_of(second))
        master.wait_idle(300)
    finally:
        master.stop()
        leftovers = labelled_containers(instance)
        remove_labelled(instance)
        docker("volume", "rm", "-f", docker_caches.branch_volume("3.11", branch), check=False)
    printed = {name: text.splitlines() for name, text in texts.items()}  # output lines, not the commands
    assert "ran" in printed["branch"] and "POISONED-BY-BRANCH" in printed["branch"], texts["branch"]
    assert any(line.startswith("planted in /cache/venvs/") for line in printed["branch"]), texts["branch"]
    assert "reusing /cache/venvs/" in texts["branch"], "the branch's volume was not seeded from main's"
    assert "ran" in printed["main 2"] and "POISONED-BY-BRANCH" not in printed["main 2"], texts["main 2"]
    assert not leftovers, leftovers
