"""Shared by the docker-mode unit tests: settings in docker mode, this repository's pipeline and the
job registry it gives, `namaskah_job` properties of jobs as another revision's file defines them, and the
base of the worker tests against the fake engine (`fake_engine.py`)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from buildbot.process.properties import Properties
from buildbot.test.fake import fakemaster
from buildbot.test.reactor import TestReactorMixin
from buildbot.worker import docker as buildbot_docker
from twisted.internet import defer
from twisted.trial import unittest

from fake_engine import FakeDockerModule
from namaskah_ci import names
from namaskah_ci.pipeline.model import load_pipeline, load_pipeline_file
from namaskah_ci.pipeline.registry import Registry
from namaskah_ci.settings import load_settings
from namaskah_ci.workers.docker import config as dc
from namaskah_ci.workers.docker import latent as dw
from namaskah_ci.workers.docker import services as ds
from pipeline_support import entry_of, job_of

ROOT = Path(__file__).resolve().parents[2]
PIPELINE = load_pipeline_file(str(ROOT / ".namaskah-ci.yml"))
REGISTRY = Registry().merge(PIPELINE, default_branch=True)
# `lint` at another revision: another Python, a service, a tool, another priority
OTHER_REVISION = """
version: 1
jobs:
  lint:
    python: "3.9"
    services: [postgres]
    tools: [docker]
    priority: low
    steps: [flake8]
"""


def docker_settings(**workers):
    env = {"PIPELINE_WORKERS_MODE": "docker", "PIPELINE_REPO_URL": "https://example.invalid/namaskah.git"}
    settings = load_settings(env)
    return dataclasses.replace(settings, workers=dataclasses.replace(settings.workers, **workers))


def job_property(builder: str, text: str = OTHER_REVISION) -> dict:
    """A `namaskah_job` property as the fan-out sets it: the job of another revision's file."""
    return job_of(load_pipeline(text, ".namaskah-ci.yml"), builder).to_dict()


class FakeBuild(Properties):
    """What start_instance needs of a build: render() and setProperty(); stopBuild() and stepDone()
    record what the container watch does to it."""

    def __init__(self):
        super().__init__()
        self.stops: list[tuple[str, int]] = []
        self.steps_done: list[int] = []

    def stopBuild(self, reason, results):
        self.stops.append((reason, results))

    def stepDone(self, results, step):
        self.steps_done.append(results)


def build_with(job: dict | None = None, branch: str = "main") -> FakeBuild:
    """A build of `branch` (the default branch's: its cache volume is the Python's own)."""
    build = FakeBuild()
    build.setProperty("branch", branch, "Build")
    if job is not None:
        build.setProperty(names.PROP_JOB, job, "Trigger")
    return build


class WorkerTestBase(TestReactorMixin, unittest.TestCase):
    @defer.inlineCallbacks
    def setUp(self):  # type: ignore[override]  # trial waits for the Deferred a setUp returns
        self.setup_test_reactor()
        self.docker = FakeDockerModule()
        self.engine = self.docker.engine
        self.patch(buildbot_docker, "docker", self.docker)
        self.patch(dw, "_reaps", {})
        self.master = yield fakemaster.make_master(self, wantData=True)

    @defer.inlineCallbacks
    def make_worker(self, builder: str, **settings_overrides):
        settings = docker_settings(instance_name="unit-master", **settings_overrides)
        worker = dc.make_job_worker(settings, entry_of(REGISTRY, builder), settings.workers.docker_host)
        worker.setServiceParent(self.master)
        yield self.master.startService()
        self.addCleanup(self.master.stopService)
        return worker

    def worker_call(self) -> dict:
        [call] = [c for c in self.engine.call_args_create_container if c["labels"][ds.LABEL_ROLE] == "worker"]
        return call

    def worker_env(self) -> dict:
        """The worker container's environment: the only place a build's service URLs go."""
        return self.worker_call()["environment"]
