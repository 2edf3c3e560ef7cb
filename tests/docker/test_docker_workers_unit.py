"""Unit tests for the docker-mode workers against a fake engine (no Docker needed).

Buildbot's `buildbot.test.fake.docker` client, extended in `fake_engine.py`,
stands in for docker-py; `TestReactorMixin` runs `deferToThread` inline. The
job builders come from a registry of this repository's `.namaskah-ci.yml`;
what a worker starts (image, volumes, CPU share, services) is rendered from
the build's `namaskah_job` property, or the registry entry without one.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from buildbot.interfaces import LatentWorkerCannotSubstantiate
from buildbot.process.properties import Properties
from buildbot.test.fake import fakemaster
from buildbot.test.reactor import TestReactorMixin
from buildbot.worker import docker as buildbot_docker
from fake_engine import FakeDockerModule
from namaskah_ci import docker_config as dc
from namaskah_ci import docker_services as ds
from namaskah_ci import docker_workers as dw
from namaskah_ci import job_commands, names
from namaskah_ci.config import build_config
from namaskah_ci.job_factory import job_steps
from namaskah_ci.job_registry import Registry
from namaskah_ci.pipeline import load_pipeline, load_pipeline_file
from namaskah_ci.pipeline_setup import make_job_setup, make_policy
from namaskah_ci.settings import load_settings
from namaskah_ci.steps.load import LoadJob
from namaskah_ci.steps.services import StartServices
from twisted.internet import defer
from twisted.trial import unittest

ROOT = Path(__file__).resolve().parents[2]
PIPELINE = load_pipeline_file(str(ROOT / ".namaskah-ci.yml"))
REGISTRY = Registry().merge(PIPELINE, default_branch=True)
OTHER_PYTHON = """
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


def job_property(builder: str, text: str = OTHER_PYTHON) -> dict:
    """A `namaskah_job` property as the fan-out sets it: the job of another revision's file."""
    return load_pipeline(text, ".namaskah-ci.yml").job(builder).to_dict()


class FakeBuild(Properties):
    """What start_instance needs of a build: render() and setProperty()."""


def build_with(job: dict | None = None) -> FakeBuild:
    build = FakeBuild()
    if job is not None:
        build.setProperty(names.PROP_JOB, job, "Trigger")
    return build


class WorkerTestBase(TestReactorMixin, unittest.TestCase):
    @defer.inlineCallbacks
    def setUp(self):
        self.setup_test_reactor()
        self.docker = FakeDockerModule()
        self.engine = self.docker.engine
        self.patch(buildbot_docker, "docker", self.docker)
        self.patch(dw, "_reaps", {})
        self.master = yield fakemaster.make_master(self, wantData=True)

    @defer.inlineCallbacks
    def make_worker(self, builder: str, **settings_overrides):
        settings = docker_settings(instance_name="unit-master", **settings_overrides)
        worker = dc.make_job_worker(settings, REGISTRY.entry(builder), settings.workers.docker_host)
        worker.setServiceParent(self.master)
        yield self.master.startService()
        self.addCleanup(self.master.stopService)
        return worker

    def worker_call(self) -> dict:
        [call] = [c for c in self.engine.call_args_create_container if c["labels"][ds.LABEL_ROLE] == "worker"]
        return call


class ServiceWorkerTests(WorkerTestBase):
    @defer.inlineCallbacks
    def test_services_start_before_the_worker_and_reach_the_build(self):
        worker = yield self.make_worker("integration")
        build = build_with()
        yield worker.start_instance(build)
        created = self.engine.call_args_create_container
        roles = [c["labels"]["org.namaskah.ci.role"] for c in created]
        self.assertEqual(roles, ["postgres", "redis", "worker"])
        database_url = build.getProperty("DATABASE_URL")
        redis_url = build.getProperty("REDIS_URL")
        self.assertRegex(database_url, r"^postgresql://namaskah:[0-9a-f]{24}@127\.0\.0\.1:\d+/namaskah_ci$")
        self.assertRegex(redis_url, r"^redis://127\.0\.0\.1:\d+/0$")
        worker_env = created[-1]["environment"]
        self.assertEqual(worker_env["DATABASE_URL"], database_url)
        self.assertEqual(worker_env["REDIS_URL"], redis_url)
        self.assertEqual(worker_env["BUILDMASTER"], "127.0.0.1")
        self.assertEqual(worker_env["BUILDMASTER_PORT"], "9989")
        # every container: host networking, this master's labels, one build key
        for call in created:
            self.assertEqual(call["labels"]["org.namaskah.ci.master"], "unit-master")
        self.assertEqual(len({c["labels"]["org.namaskah.ci.build"] for c in created}), 1)
        self.assertTrue(all(h.get("network_mode") == "host" for h in self.engine.host_configs))
        postgres = created[0]
        self.assertIn("listen_addresses=127.0.0.1", postgres["command"])
        self.assertEqual(postgres["healthcheck"]["test"][:2], ["CMD", "pg_isready"])
        self.assertIn("/var/lib/postgresql/data", self.engine.host_configs[0]["tmpfs"])

    @defer.inlineCallbacks
    def test_stop_removes_every_container_of_the_build(self):
        worker = yield self.make_worker("integration")
        yield worker.start_instance(build_with())
        self.assertEqual(len(self.engine.running()), 3)
        yield worker.stop_instance()
        self.assertEqual(self.engine.running(), [])
        self.assertIsNone(worker.service_state)
        self.assertNotIn("DATABASE_URL", worker.extra_env)
        self.assertEqual(worker.ports._held, set())

    @defer.inlineCallbacks
    def test_stop_removes_services_even_when_the_worker_container_is_gone(self):
        worker = yield self.make_worker("integration")
        yield worker.start_instance(build_with())
        [worker_container] = self.engine.running("worker")
        del self.engine._containers[worker_container["Id"]]  # killed and auto-removed
        yield worker.stop_instance(fast=True)
        self.assertEqual(self.engine.running(), [])

    @defer.inlineCallbacks
    def test_migration_gets_postgres_only(self):
        worker = yield self.make_worker("migration-test")
        build = build_with()
        yield worker.start_instance(build)
        self.assertEqual([c["Labels"]["org.namaskah.ci.role"] for c in self.engine.running()], ["postgres", "worker"])
        self.assertIsNone(build.getProperty("REDIS_URL"))
        yield worker.stop_instance()

    @defer.inlineCallbacks
    def test_a_job_without_services_starts_only_its_worker(self):
        worker = yield self.make_worker("lint")
        build = build_with()
        yield worker.start_instance(build)
        self.assertEqual([c["Labels"][ds.LABEL_ROLE] for c in self.engine.running()], ["worker"])
        self.assertIsNone(build.getProperty("DATABASE_URL"))
        yield worker.stop_instance()
        self.assertEqual(self.engine.running(), [])

    @defer.inlineCallbacks
    def test_a_service_that_never_gets_ready_fails_within_the_bound_and_leaves_nothing(self):
        worker = yield self.make_worker("integration", service_ready_timeout=1)
        self.engine.image_health["namaskah-ci/postgres:15"] = "never"
        with self.assertRaises(LatentWorkerCannotSubstantiate) as caught:
            yield worker.start_instance(build_with())
        message = str(caught.exception)
        self.assertIn("postgres (namaskah-ci/postgres:15) did not accept connections", message)
        self.assertIn("within 1s", message)
        self.assertIn("no response", message)
        self.assertEqual(self.engine.running(), [])
        self.assertEqual(worker.ports._held, set())
        yield worker.stop_instance()  # what insubstantiate does next: harmless

    @defer.inlineCallbacks
    def test_a_service_that_exits_fails_at_once_with_its_log(self):
        worker = yield self.make_worker("integration")
        self.engine.image_health["namaskah-ci/redis:7"] = "exits"
        with self.assertRaises(LatentWorkerCannotSubstantiate) as caught:
            yield worker.start_instance(build_with())
        self.assertIn("redis (namaskah-ci/redis:7) exited with code 1", str(caught.exception))
        self.assertIn("fake log line", str(caught.exception))
        self.assertEqual(self.engine.running(), [])

    @defer.inlineCallbacks
    def test_a_worker_container_that_cannot_start_takes_its_services_down(self):
        worker = yield self.make_worker("integration")
        self.engine.fail_create.add("namaskah-ci/worker:py3.11-servers")
        with self.assertRaises(RuntimeError):
            yield worker.start_instance(build_with())
        self.assertEqual(self.engine.running(), [])

    @defer.inlineCallbacks
    def test_missing_worker_image_cannot_substantiate_and_cleans_up(self):
        worker = yield self.make_worker("integration", images={"integration": "no-such-image:1"})
        with self.assertRaises(LatentWorkerCannotSubstantiate) as caught:
            yield worker.start_instance(build_with())
        self.assertIn("no-such-image:1", str(caught.exception))
        self.assertEqual(self.engine.running(), [])

    @defer.inlineCallbacks
    def test_per_build_network_mode(self):
        worker = yield self.make_worker("integration", network_mode="per-build")
        build = build_with()
        yield worker.start_instance(build)
        [network] = self.engine.networks_created
        self.assertTrue(network.startswith("namaskah-docker-integration-"))
        self.assertEqual(build.getProperty("REDIS_URL"), "redis://redis:6379/0")
        self.assertIn("@postgres:5432/", build.getProperty("DATABASE_URL"))
        self.assertTrue(all(h["network_mode"] == network for h in self.engine.host_configs))
        yield worker.stop_instance()
        self.assertEqual(self.engine.networks_created, {})
        self.assertEqual(self.engine.running(), [])


class RenderedPerBuildTests(WorkerTestBase):
    """The build's job definition (`namaskah_job`) decides the container; the registry entry without one."""

    @defer.inlineCallbacks
    def test_the_registry_entry_without_a_job_property(self):
        worker = yield self.make_worker("test-py3.9")
        yield worker.start_instance(build_with())
        call = self.worker_call()
        self.assertEqual(call["image"], "namaskah-ci/worker:py3.9")
        self.assertEqual(self.engine.host_configs[-1]["binds"], ["namaskah-ci-cache-py3.9:/cache"])
        self.assertEqual(self.engine.host_configs[-1]["cpu_shares"], dc.CPU_SHARES["normal"])
        self.assertEqual(self.engine.volumes["namaskah-ci-cache-py3.9"]["Labels"][ds.LABEL_ROLE], "cache")
        yield worker.stop_instance()

    @defer.inlineCallbacks
    def test_a_job_at_another_python_with_services_gets_its_image_cache_share_and_services(self):
        worker = yield self.make_worker("lint")  # the registry: Python 3.11, no services, priority high
        build = build_with(job_property("lint"))
        yield worker.start_instance(build)
        roles = [c["labels"][ds.LABEL_ROLE] for c in self.engine.call_args_create_container]
        self.assertEqual(roles, ["postgres", "worker"])
        self.assertEqual(self.worker_call()["image"], "namaskah-ci/tools:latest")  # `tools` at this revision
        worker_host = self.engine.host_configs[-1]
        self.assertIn("namaskah-ci-cache-py3.9:/cache", worker_host["binds"])
        self.assertIn("/var/run/docker.sock:/var/run/docker.sock", worker_host["binds"])
        self.assertEqual(worker_host["cpu_shares"], dc.CPU_SHARES["low"])
        self.assertIn("namaskah-ci-cache-py3.9", self.engine.volumes)
        self.assertIsNotNone(build.getProperty("DATABASE_URL"))
        yield worker.stop_instance()
        self.assertEqual(self.engine.running(), [])

    @defer.inlineCallbacks
    def test_a_job_at_another_python_without_tools_runs_in_that_pythons_image(self):
        worker = yield self.make_worker("lint")
        yield worker.start_instance(build_with(job_property("lint", "version: 1\njobs:\n  lint: {python: '3.9', steps: [x]}\n")))
        self.assertEqual(self.worker_call()["image"], "namaskah-ci/worker:py3.9")
        self.assertEqual([c["Labels"][ds.LABEL_ROLE] for c in self.engine.running()], ["worker"])
        yield worker.stop_instance()

    @defer.inlineCallbacks
    def test_the_job_property_of_another_builder_is_ignored(self):
        worker = yield self.make_worker("migration-test")
        yield worker.start_instance(build_with(job_property("lint")))
        self.assertEqual(self.worker_call()["image"], "namaskah-ci/worker:py3.11")
        self.assertEqual([c["Labels"][ds.LABEL_ROLE] for c in self.engine.running()], ["postgres", "worker"])
        yield worker.stop_instance()

    def test_images_per_builder_job_tools_and_python(self):
        settings = docker_settings(images={**docker_settings().workers.images, "test-py3.9": "mirror/py39:1"})
        job = lambda builder: dataclasses.asdict(REGISTRY.entry(builder))  # noqa: E731

        def image(builder):
            entry = job(builder)
            return dc.image_for(settings, entry["builder"], entry["job"], entry["python"], entry["tools"])

        self.assertEqual(image("test-py3.9"), "mirror/py39:1")  # a builder name
        self.assertEqual(image("test-py3.11"), "namaskah-ci/worker:py3.11")
        self.assertEqual(image("integration"), "namaskah-ci/worker:py3.11-servers")  # a job name
        self.assertEqual(image("container-scan"), "namaskah-ci/tools:latest")
        self.assertEqual(image("secrets-scan"), "namaskah-ci/tools:latest")
        self.assertEqual(image("lint"), "namaskah-ci/worker:py3.11")
        by_job = docker_settings(images={"test": "mirror/test:2"})
        self.assertEqual(dc.image_for(by_job, "test-py3.9", "test", "3.9", ()), "mirror/test:2")
        self.assertEqual(dc.image_for(by_job, "lint", "lint", "3.11", ()), "namaskah-ci/worker:py3.11")  # defaults kept

    def test_a_job_named_like_a_service_or_role_does_not_run_in_that_image(self):
        settings = docker_settings()
        self.assertEqual(dc.image_for(settings, "postgres", "postgres", "3.11", ()), "namaskah-ci/worker:py3.11")
        self.assertEqual(dc.image_for(settings, "redis", "redis", "3.9", ()), "namaskah-ci/worker:py3.9")

    def test_cpu_shares_follow_the_jobs_priority(self):
        settings = docker_settings()
        shares = {
            builder: dc._JobValues(settings, REGISTRY.entry(builder)).hostconfig(Properties())["cpu_shares"]
            for builder in REGISTRY.builders
        }
        self.assertEqual(shares["lint"], shares["integration"])  # priority: high
        self.assertEqual(shares["lint"], 3072)
        self.assertEqual(shares["test-py3.9"], 1024)  # the engine's default weight
        self.assertGreater(shares["security"], shares["codeql"])  # outside the verdict: low
        self.assertEqual(shares["codeql"], 128)

    def test_a_local_repository_is_mounted_read_only(self):
        settings = docker_settings()
        settings = dataclasses.replace(settings, repo=dataclasses.replace(settings.repo, url="/srv/repo"))
        volumes = dc._JobValues(settings, REGISTRY.entry("lint")).volumes(Properties())
        self.assertEqual(volumes, ["namaskah-ci-cache-py3.11:/cache", "/srv/repo:/srv/repo:ro"])


class ExtraHostTests(WorkerTestBase):
    @defer.inlineCallbacks
    def test_an_extra_host_gets_random_ports_from_the_range(self):
        settings = docker_settings(instance_name="unit-master", extra_docker_hosts=["unix:///run/build2.sock"])
        entry = REGISTRY.entry("integration")
        first = dc.make_job_worker(settings, entry, settings.workers.docker_host, 0)
        extra = dc.make_job_worker(settings, entry, "unix:///run/build2.sock", 1)
        for worker in (first, extra):
            worker.setServiceParent(self.master)
        yield self.master.startService()
        self.addCleanup(self.master.stopService)
        self.assertEqual(extra.name, "docker-integration-h2")
        self.assertTrue(first.ports.local)
        self.assertFalse(extra.ports.local)
        port = extra.ports.allocate()
        self.assertTrue(ds.EPHEMERAL_PORTS[0] <= port <= ds.EPHEMERAL_PORTS[1])
        yield extra.start_instance(build_with())
        self.assertEqual(self.engine.base_url, "unix:///run/build2.sock")
        yield extra.stop_instance()


class LeftoverTests(WorkerTestBase):
    @defer.inlineCallbacks
    def test_leftovers_of_an_earlier_run_are_removed_before_the_first_container(self):
        stale_labels = {ds.LABEL_MASTER: "unit-master", ds.LABEL_INCARNATION: "earlier-run"}
        self.engine.create_container("namaskah-ci/postgres:15", name="stale-postgres", labels=stale_labels)
        self.engine.create_network("stale-net", labels=stale_labels)
        other_master = {ds.LABEL_MASTER: "another-master", ds.LABEL_INCARNATION: "x"}
        self.engine.create_container("namaskah-ci/redis:7", name="not-ours", labels=other_master)
        # the master's own container (compose) has the master label but no build labels
        self.engine.create_container(
            "namaskah-ci/master:latest", name="the-master", labels={ds.LABEL_MASTER: "unit-master"}
        )
        worker = yield self.make_worker("lint")
        yield worker.start_instance(build_with())
        found = sorted(c["name"] for c in self.engine.running())
        self.assertEqual(found, ["buildbot-docker-lint-" + worker.masterhash, "not-ours", "the-master"])
        self.assertEqual(self.engine.networks_created, {})
        yield worker.stop_instance()
        self.assertEqual(sorted(c["name"] for c in self.engine.running()), ["not-ours", "the-master"])


class ConfigTests(unittest.TestCase):
    def test_every_job_builder_gets_a_docker_worker_and_the_pipeline_a_local_one(self):
        config = build_config(docker_settings(), REGISTRY)
        workers = {w.name: w for w in config["workers"]}
        builders = {b.name: b for b in config["builders"]}
        self.assertEqual(builders["pipeline"].workernames, ["local-pipeline"])
        self.assertEqual(type(workers["local-pipeline"]).__name__, "LocalWorker")
        for builder in REGISTRY.builders:
            [name] = builders[builder].workernames
            self.assertEqual(name, names.docker_worker_name(builder))
            self.assertIs(type(workers[name]), dw.ServiceDockerWorker, builder)
            [load] = builders[builder].factory.steps
            self.assertIs(load.step_class, LoadJob)
        self.assertEqual(set(REGISTRY.builders), {job.builder for job in PIPELINE.jobs})

    def test_extra_docker_hosts_give_each_builder_one_worker_per_host(self):
        config = build_config(docker_settings(extra_docker_hosts=["tcp://worker2.example:2376"]), REGISTRY)
        builders = {b.name: b.workernames for b in config["builders"]}
        self.assertEqual(builders["lint"], ["docker-lint", "docker-lint-h2"])
        workers = {w.name: w for w in config["workers"]}
        self.assertEqual(len([w for w in workers if w.startswith("docker-")]), 2 * len(REGISTRY.builders))

    def test_the_docker_plan(self):
        plan = dc.make_docker_plan(docker_settings(extra_docker_hosts=["unix:///run/b2.sock"]))
        self.assertEqual((plan.mode, plan.runner, plan.cache_root), ("docker", "python3", "/cache"))
        self.assertEqual(plan.helpers_dir, "../.namaskah-ci/helpers")
        self.assertTrue(plan.transfer_helpers and plan.services_in_worker)
        self.assertEqual(plan.hosts, 2)
        self.assertEqual(plan.job_workers("lint"), ["docker-lint", "docker-lint-h2"])
        self.assertEqual(plan.known_pythons, ("3.11", "3.9"))
        ca = "/etc/namaskah/ca/ca-bundle.crt"
        self.assertEqual(
            dict(plan.base_env),
            {"GIT_SSL_CAINFO": ca, "PIP_CERT": ca, "REQUESTS_CA_BUNDLE": ca, "SSL_CERT_FILE": ca},
        )
        # a Python is known when an image key names it; a pipeline file asking another one is refused
        more = dc.make_docker_plan(docker_settings(images={"3.12": "mirror/py312:1"}))
        self.assertIn("3.12", more.known_pythons)
        self.assertEqual(make_policy(docker_settings(), plan).known_pythons, ("3.11", "3.9"))

    def test_docker_jobs_run_helpers_copied_into_the_build_with_the_image_python(self):
        settings = docker_settings(app_base_image="namaskah-ci/base:bookworm")
        setup = make_job_setup(settings, dc.make_docker_plan(settings))
        self.assertTrue(setup.transfer_helpers)
        steps = job_steps(PIPELINE.job("integration"), setup, "python3")
        self.assertFalse(any(isinstance(step, StartServices) for step in steps))
        self.assertNotIn("stop services", [step.name for step in steps])
        [venv] = [s for s in steps if s.name.startswith("virtualenv")]
        self.assertEqual(
            venv.command[:9],
            ["python3", "../.namaskah-ci/helpers/ci_step.py", "--job-dir", "../.namaskah-ci", "venv",
             "--python", "python3", "--cache-root", "/cache"],
        )  # fmt: skip
        [tests] = [s for s in steps if s.name == "integration tests"]
        self.assertEqual(
            tests.command[:6], ["python3", "../.namaskah-ci/helpers/ci_step.py", "--job-dir", "../.namaskah-ci", "run", "--"]
        )
        self.assertEqual(tests.env, {})  # the services' URLs come from the worker container
        scan = job_steps(PIPELINE.job("container-scan"), setup, "python3")
        [tools] = [s for s in scan if s.name == "required tools"]
        self.assertEqual(tools.command[-4:], ["python3", "../.namaskah-ci/helpers/ci_require_tools.py", "docker", "trivy"])

    def test_the_job_environment_is_built_from_scratch_with_the_images_ca_bundle(self):
        settings = docker_settings(app_base_image="namaskah-ci/base:bookworm", job_env={"PIP_INDEX_URL": "http://m/simple"})
        setup = make_job_setup(settings, dc.make_docker_plan(settings))
        job = PIPELINE.job("container-scan")
        document = job_commands.job_document(
            job, setup.layout, interpreter="python3", base_path=setup.base_path, worker_env=setup.env_for(job)
        )
        env = document["env"]
        for key in ("GIT_SSL_CAINFO", "PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "PIP_CERT_FILE"):
            self.assertEqual(env[key], dc.CA_BUNDLE, key)
        self.assertEqual(env["APP_BASE_IMAGE"], "namaskah-ci/base:bookworm")
        self.assertEqual(env["PIP_INDEX_URL"], "http://m/simple")
        self.assertEqual(env["PIP_CACHE_DIR"], "/cache/pip-3.11")
        self.assertNotIn("PIPELINE_WORKERS_MODE", env)  # nothing of the master's environment
        self.assertEqual(document["pass"], [])
        self.assertEqual(job_commands.job_document(
            PIPELINE.job("integration"), setup.layout, interpreter="python3", base_path="/bin", worker_env={}
        )["pass"], ["DATABASE_URL", "REDIS_URL"])  # fmt: skip

    def test_settings_reject_an_unknown_network_mode(self):
        from namaskah_ci.settings import SettingsError

        with self.assertRaises(SettingsError) as caught:
            load_settings({"PIPELINE_WORKERS_NETWORK_MODE": "bridge"})
        self.assertIn("network_mode", str(caught.exception))
