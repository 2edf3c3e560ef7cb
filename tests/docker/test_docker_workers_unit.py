"""Unit tests for the docker-mode workers against a fake engine (no Docker needed).

Buildbot's `buildbot.test.fake.docker` client, extended in `fake_engine.py`,
stands in for docker-py; `TestReactorMixin` runs `deferToThread` inline.
"""

from __future__ import annotations

import dataclasses

from buildbot.interfaces import LatentWorkerCannotSubstantiate
from buildbot.process.properties import Properties
from buildbot.test.fake import fakemaster
from buildbot.test.reactor import TestReactorMixin
from buildbot.worker import docker as buildbot_docker
from fake_engine import FakeDockerModule
from namaskah_ci import docker_config as dc
from namaskah_ci import docker_services as ds
from namaskah_ci import docker_workers as dw
from namaskah_ci.config import build_config
from namaskah_ci.jobs import make_jobs
from namaskah_ci.settings import load_settings
from twisted.internet import defer
from twisted.trial import unittest


def docker_settings(**workers):
    env = {"PIPELINE_WORKERS_MODE": "docker", "PIPELINE_REPO_URL": "https://example.invalid/namaskah.git"}
    settings = load_settings(env)
    return dataclasses.replace(settings, workers=dataclasses.replace(settings.workers, **workers))


class FakeBuild(Properties):
    """What start_instance needs of a build: render() and setProperty()."""


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
    def make_worker(self, job_name: str, **settings_overrides):
        settings = docker_settings(instance_name="unit-master", **settings_overrides)
        job = {j.name: j for j in make_jobs()}[job_name]
        worker = dc.make_job_worker(settings, job, settings.workers.docker_host)
        worker.setServiceParent(self.master)
        yield self.master.startService()
        self.addCleanup(self.master.stopService)
        return worker

    def build(self):
        return FakeBuild()


class ServiceWorkerTests(WorkerTestBase):
    @defer.inlineCallbacks
    def test_services_start_before_the_worker_and_reach_the_build(self):
        worker = yield self.make_worker("integration")
        build = self.build()
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
    def test_a_job_container_gets_its_cpu_share(self):
        worker = yield self.make_worker("integration")
        yield worker.start_instance(self.build())
        self.assertEqual(self.engine.host_configs[-1].get("cpu_shares"), dc.LONG_JOB_CPU_SHARES)  # the worker

    @defer.inlineCallbacks
    def test_stop_removes_every_container_of_the_build(self):
        worker = yield self.make_worker("integration")
        yield worker.start_instance(self.build())
        self.assertEqual(len(self.engine.running()), 3)
        yield worker.stop_instance()
        self.assertEqual(self.engine.running(), [])
        self.assertIsNone(worker.service_state)
        self.assertNotIn("DATABASE_URL", worker.extra_env)
        self.assertEqual(worker.ports._held, set())

    @defer.inlineCallbacks
    def test_stop_removes_services_even_when_the_worker_container_is_gone(self):
        worker = yield self.make_worker("integration")
        yield worker.start_instance(self.build())
        [worker_container] = self.engine.running("worker")
        del self.engine._containers[worker_container["Id"]]  # killed and auto-removed
        yield worker.stop_instance(fast=True)
        self.assertEqual(self.engine.running(), [])

    @defer.inlineCallbacks
    def test_migration_gets_postgres_only(self):
        worker = yield self.make_worker("migration-test")
        build = self.build()
        yield worker.start_instance(build)
        self.assertEqual([c["Labels"]["org.namaskah.ci.role"] for c in self.engine.running()], ["postgres", "worker"])
        self.assertIsNone(build.getProperty("REDIS_URL"))
        yield worker.stop_instance()

    @defer.inlineCallbacks
    def test_a_service_that_never_gets_ready_fails_within_the_bound_and_leaves_nothing(self):
        worker = yield self.make_worker("integration", service_ready_timeout=1)
        self.engine.image_health["namaskah-ci/postgres:15"] = "never"
        with self.assertRaises(LatentWorkerCannotSubstantiate) as caught:
            yield worker.start_instance(self.build())
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
            yield worker.start_instance(self.build())
        self.assertIn("redis (namaskah-ci/redis:7) exited with code 1", str(caught.exception))
        self.assertIn("fake log line", str(caught.exception))
        self.assertEqual(self.engine.running(), [])

    @defer.inlineCallbacks
    def test_a_worker_container_that_cannot_start_takes_its_services_down(self):
        worker = yield self.make_worker("integration")
        self.engine.fail_create.add("namaskah-ci/worker:py3.11-servers")
        with self.assertRaises(RuntimeError):
            yield worker.start_instance(self.build())
        self.assertEqual(self.engine.running(), [])

    @defer.inlineCallbacks
    def test_missing_worker_image_cannot_substantiate_and_cleans_up(self):
        worker = yield self.make_worker("integration", images={"integration": "no-such-image:1"})
        with self.assertRaises(LatentWorkerCannotSubstantiate) as caught:
            yield worker.start_instance(self.build())
        self.assertIn("no-such-image:1", str(caught.exception))
        self.assertEqual(self.engine.running(), [])

    @defer.inlineCallbacks
    def test_per_build_network_mode(self):
        worker = yield self.make_worker("integration", network_mode="per-build")
        build = self.build()
        yield worker.start_instance(build)
        [network] = self.engine.networks_created
        self.assertTrue(network.startswith("namaskah-docker-integration-"))
        self.assertEqual(build.getProperty("REDIS_URL"), "redis://redis:6379/0")
        self.assertIn("@postgres:5432/", build.getProperty("DATABASE_URL"))
        self.assertTrue(all(h["network_mode"] == network for h in self.engine.host_configs))
        yield worker.stop_instance()
        self.assertEqual(self.engine.networks_created, {})
        self.assertEqual(self.engine.running(), [])


class ExtraHostTests(WorkerTestBase):
    @defer.inlineCallbacks
    def test_an_extra_host_gets_random_ports_from_the_range(self):
        settings = docker_settings(instance_name="unit-master", extra_docker_hosts=["unix:///run/build2.sock"])
        job = {j.name: j for j in make_jobs()}["integration"]
        first = dc.make_job_worker(settings, job, settings.workers.docker_host, 0)
        extra = dc.make_job_worker(settings, job, "unix:///run/build2.sock", 1)
        for worker in (first, extra):
            worker.setServiceParent(self.master)
        yield self.master.startService()
        self.addCleanup(self.master.stopService)
        self.assertEqual(extra.name, "docker-integration-h2")
        self.assertTrue(first.ports.local)
        self.assertFalse(extra.ports.local)
        port = extra.ports.allocate()
        self.assertTrue(ds.EPHEMERAL_PORTS[0] <= port <= ds.EPHEMERAL_PORTS[1])


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
        yield worker.start_instance(self.build())
        names = sorted(c["name"] for c in self.engine.running())
        self.assertEqual(names, ["buildbot-docker-lint-" + worker.masterhash, "not-ours", "the-master"])
        self.assertEqual(self.engine.networks_created, {})
        yield worker.stop_instance()
        self.assertEqual(sorted(c["name"] for c in self.engine.running()), ["not-ours", "the-master"])


class ConfigTests(unittest.TestCase):
    def test_every_check_builder_gets_a_docker_worker_and_the_pipeline_a_local_one(self):
        config = build_config(docker_settings())
        workers = {w.name: w for w in config["workers"]}
        builders = {b.name: b.workernames for b in config["builders"]}
        self.assertEqual(builders["pipeline"], ["local-pipeline"])
        self.assertEqual(type(workers["local-pipeline"]).__name__, "LocalWorker")
        for job in make_jobs():
            [name] = builders[job.name]
            expected = dw.ServiceDockerWorker if job.services else dw.NamaskahDockerWorker
            self.assertIs(type(workers[name]), expected, job.name)

    def test_extra_docker_hosts_give_each_builder_one_worker_per_host(self):
        config = build_config(docker_settings(extra_docker_hosts=["tcp://worker2.example:2376"]))
        builders = {b.name: b.workernames for b in config["builders"]}
        self.assertEqual(builders["lint"], ["docker-lint", "docker-lint-h2"])

    def test_images_and_volumes(self):
        settings = docker_settings(app_base_image="namaskah-ci/base:bookworm")
        jobs = {j.name: j for j in make_jobs()}
        self.assertEqual(dc.image_for(settings, jobs["test-py3.9"]), "namaskah-ci/worker:py3.9")
        self.assertEqual(dc.image_for(settings, jobs["lint"]), "namaskah-ci/worker:py3.11")
        self.assertEqual(dc.image_for(settings, jobs["integration"]), "namaskah-ci/worker:py3.11-servers")
        self.assertEqual(dc.image_for(settings, jobs["container-scan"]), "namaskah-ci/tools:latest")
        self.assertEqual(dc.image_for(settings, jobs["security"]), "namaskah-ci/tools:latest")
        self.assertEqual(dc.image_for(settings, jobs["codeql"]), "namaskah-ci/tools:latest")
        self.assertEqual(dc._volumes(settings, jobs["test-py3.9"]), ["namaskah-ci-cache-py3.9:/cache"])
        self.assertIn("/var/run/docker.sock:/var/run/docker.sock", dc._volumes(settings, jobs["container-scan"]))
        overridden = docker_settings(images={"postgres": "postgres:15"})
        self.assertEqual(dc.image_for(overridden, jobs["lint"]), "namaskah-ci/worker:py3.11")  # defaults kept

    def test_the_longest_checks_get_the_largest_cpu_share(self):
        shares = {j.name: dc.cpu_shares(j) for j in make_jobs()}
        self.assertEqual(shares["lint"], shares["integration"])
        self.assertGreater(shares["integration"], shares["test-py3.9"])
        self.assertEqual(shares["test-py3.9"], 1024)  # the engine's default weight
        self.assertGreater(shares["security"], shares["codeql"])

    def test_a_local_repository_is_mounted_read_only(self):
        settings = docker_settings()
        settings = dataclasses.replace(settings, repo=dataclasses.replace(settings.repo, url="/srv/repo"))
        job = {j.name: j for j in make_jobs()}["lint"]
        self.assertIn("/srv/repo:/srv/repo:ro", dc._volumes(settings, job))

    def test_docker_mode_factories_use_the_container_python_and_the_worker_services(self):
        config = build_config(docker_settings())
        factory = {b.name: b.factory for b in config["builders"]}["integration"]
        names = [step.kwargs.get("name") for step in factory.steps]
        self.assertNotIn("stop services", names)
        self.assertFalse(any(str(n).startswith("start ") for n in names), names)
        venv = [s for s in factory.steps if str(s.kwargs.get("name", "")).startswith("virtualenv")][0]
        self.assertEqual(venv.kwargs["command"][:4], ["python3", "scripts/ci_venv.py", "--python", "python3"])
        self.assertIn("/cache", venv.kwargs["command"])
        scan = {b.name: b.factory for b in config["builders"]}["container-scan"]
        tools = [s for s in scan.steps if s.kwargs.get("name") == "required tools"][0]
        self.assertEqual(tools.kwargs["command"], ["namaskah-require-tools", "docker", "trivy"])

    def test_settings_reject_an_unknown_network_mode(self):
        from namaskah_ci.settings import SettingsError

        with self.assertRaises(SettingsError) as caught:
            load_settings({"PIPELINE_WORKERS_NETWORK_MODE": "bridge"})
        self.assertIn("network_mode", str(caught.exception))
