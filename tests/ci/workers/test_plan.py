"""How many pipelines and jobs run at once: the settings, the workers each builder gets, the shared lock."""

from __future__ import annotations

import dataclasses
import os
from typing import Any, cast

import pytest
from buildbot.process.properties import Properties

from namaskah_ci import names
from namaskah_ci.builders.jobs import JOB_SLOTS_LOCK, JobLocks
from namaskah_ci.config import build_config
from namaskah_ci.pipeline.model import load_pipeline
from namaskah_ci.pipeline.registry import Registry
from namaskah_ci.settings import load_settings
from namaskah_ci.settings_checks import SettingsError
from namaskah_ci.workers import plan as worker_plan

FILE = """
version: 1
requirements: []
jobs:
  lint: {steps: [flake8]}
  test: {matrix: {python: ["3.9", "3.11"]}, steps: [pytest]}
"""
REGISTRY = Registry().merge(load_pipeline(FILE, ".namaskah-ci.yml"), default_branch=True)


def settings(tmp_path, **env):
    base = {"PIPELINE_MASTER_BASEDIR": str(tmp_path / "m"), "PIPELINE_SECRETS_DIR": str(tmp_path / "s")}
    return load_settings({**base, **{f"PIPELINE_{k.upper()}": str(v) for k, v in env.items()}})


def test_by_default_local_mode_runs_as_many_jobs_as_cores(tmp_path):
    config = build_config(settings(tmp_path), REGISTRY)
    cores = os.cpu_count() or 1
    builders = {b.name: b for b in config["builders"]}
    assert builders["lint"].workernames == [names.worker_name("lint", s) for s in range(cores)] + ["reuse"]
    assert builders["lint"].locks.lock.maxCount == cores
    assert len(builders["pipeline"].workernames) == max(4, 2 * cores)
    # deploys and rollbacks: one at a time per environment, never a job slot
    assert builders["deploy-production"].workernames == ["local-deploy-production"]
    assert all(access.lockid.name != JOB_SLOTS_LOCK for access in builders["deploy-production"].locks)
    every = {w.name for w in config["workers"]}
    assert {n for b in builders.values() for n in b.workernames} == every


def test_the_settings_bound_jobs_and_pipelines(tmp_path):
    config = build_config(settings(tmp_path, workers_max_jobs=3, pipeline_max_pipelines=5), REGISTRY)
    builders = {b.name: b for b in config["builders"]}
    assert builders["test-py3.9"].workernames == [
        "local-test-py3_9",
        "local-test-py3_9-s2",
        "local-test-py3_9-s3",
        "reuse",
    ]
    assert builders["pipeline"].workernames == ["local-pipeline", *(f"local-pipeline-s{i}" for i in range(2, 6))]
    # one lock shared by every job builder: three jobs at once in all
    locks = {id(builders[name].locks.lock) for name in REGISTRY.builders}
    assert len(locks) == 1 and builders["lint"].locks.lock.maxCount == 3
    assert builders["lint"].locks.lock.name == JOB_SLOTS_LOCK


def test_docker_mode_counts_engines_times_their_jobs(tmp_path):
    base = settings(tmp_path, workers_mode="docker", repo_url="https://example.invalid/r.git")
    two = dataclasses.replace(
        base, workers=dataclasses.replace(base.workers, extra_docker_hosts=["unix:///run/second.sock"], engine_jobs=3)
    )
    assert worker_plan.job_slots(two) == 6 and worker_plan.builder_slots(two) == 3
    capped = dataclasses.replace(two, workers=dataclasses.replace(two.workers, max_jobs=2))
    assert worker_plan.job_slots(capped) == 2 and worker_plan.builder_slots(capped) == 2


@pytest.mark.parametrize("key", ["workers_max_jobs", "workers_engine_jobs", "pipeline_max_pipelines"])
def test_a_negative_bound_is_refused_naming_it(tmp_path, key):
    with pytest.raises(SettingsError) as refused:
        settings(tmp_path, **{key: -1})
    section, _, name = key.partition("_")
    assert f"[{section}] {name}" in str(refused.value)


def test_a_reused_build_takes_no_slot():
    locks = JobLocks(2)
    plain = Properties()
    reused = Properties(**{names.PROP_REUSED: {"builder": "lint", "number": 3}})
    (access,) = cast("list[Any]", locks.getRenderingFor(plain).result)  # fired: defer.succeed
    assert access.lockid is locks.lock and access.mode == "counting"
    assert locks.getRenderingFor(reused).result == []
    assert JobLocks(2) == JobLocks(2) and JobLocks(2) != JobLocks(3)  # a reconfig keeps an unchanged lock
