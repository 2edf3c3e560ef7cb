"""Unit tests for the docker-mode workers against a fake engine (no Docker needed).

Buildbot's `buildbot.test.fake.docker` client, extended in `fake_engine.py`,
stands in for docker-py; `TestReactorMixin` runs `deferToThread` inline. The
job builders come from a registry of this repository's `.namaskah-ci.yml`;
what a worker starts (image, volumes, CPU share, services) is rendered from
the build's `namaskah_job` property, or from the registry entry without one.
(The configuration functions alone: `test_docker_config_unit.py`.)
"""

from __future__ import annotations

import json
import urllib.parse
from typing import Any
from unittest import mock

from buildbot.interfaces import LatentWorkerCannotSubstantiate
from buildbot.process.results import CANCELLED, EXCEPTION, FAILURE, RETRY
from buildbot.worker import docker as buildbot_docker
from twisted.internet import defer, threads

from namaskah_ci.workers.docker import config as dc
from namaskah_ci.workers.docker import service_specs
from namaskah_ci.workers.docker import services as ds
from namaskah_ci.workers.docker import watch as docker_watch
from pipeline_support import entry_of
from unit_support import REGISTRY, FakeBuild, WorkerTestBase, build_with, docker_settings, job_property


class ServiceWorkerTests(WorkerTestBase):
    @defer.inlineCallbacks
    def test_services_start_before_the_worker_and_reach_the_build(self):
        worker = yield self.make_worker("integration")
        build = build_with()
        yield worker.start_instance(build)
        created = self.engine.call_args_create_container
        roles = [c["labels"]["org.namaskah.ci.role"] for c in created]
        self.assertEqual(roles, ["postgres", "redis", "worker"])
        worker_env = created[-1]["environment"]
        database_url, redis_url = worker_env["DATABASE_URL"], worker_env["REDIS_URL"]
        self.assertRegex(database_url, r"^postgresql://namaskah:[0-9a-f]{24}@127\.0\.0\.1:\d+/namaskah_ci$")
        self.assertRegex(redis_url, r"^redis://default:[0-9a-f]{24}@127\.0\.0\.1:\d+/0$")
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
    def test_the_service_passwords_are_in_no_build_property_and_redis_requires_its_own(self):
        """Every build's services listen on the host's loopback: their passwords keep other builds out,
        so they go to the worker container's environment only, never to a property (the REST API)."""
        worker = yield self.make_worker("integration")
        build = build_with()
        yield worker.start_instance(build)
        env = self.worker_env()
        passwords = {key: urllib.parse.urlsplit(env[key]).password for key in ("DATABASE_URL", "REDIS_URL")}
        self.assertTrue(all(passwords.values()), passwords)
        properties = json.dumps(build.asDict())
        self.assertEqual([key for key, password in passwords.items() if password in properties], [])
        redis = self.engine.call_args_create_container[1]
        self.assertEqual(redis["command"][redis["command"].index("--requirepass") + 1], passwords["REDIS_URL"])
        self.assertEqual(redis["environment"]["REDISCLI_AUTH"], passwords["REDIS_URL"])  # its healthcheck's
        yield worker.stop_instance()

    @defer.inlineCallbacks
    def test_the_jobs_database_role_is_made_in_the_ready_container_and_is_no_superuser(self):
        worker = yield self.make_worker("integration")
        build = build_with()
        yield worker.start_instance(build)
        postgres, redis = self.engine.call_args_create_container[:2]
        password = self.worker_env()["DATABASE_URL"].split(":")[2].split("@")[0]
        admin = postgres["environment"]
        self.assertEqual(admin["POSTGRES_USER"], "postgres")  # the image's superuser: not the job's
        self.assertNotEqual(admin["POSTGRES_PASSWORD"], password)
        [made] = self.engine.execs
        self.assertEqual((made["container"], made["user"]), (self.engine.running("postgres")[0]["Id"], "postgres"))
        sql = " ".join(made["cmd"])
        self.assertIn(
            f"CREATE ROLE namaskah LOGIN CREATEDB NOSUPERUSER NOCREATEROLE NOREPLICATION NOBYPASSRLS "
            f"PASSWORD '{password}'",
            sql,
        )
        self.assertIn("ALTER DATABASE namaskah_ci OWNER TO namaskah", sql)
        for command in service_specs.REDIS_DISABLED:  # nothing that writes a file or loads code outside its data
            self.assertIn(
                ["--rename-command", command, ""], [redis["command"][i : i + 3] for i in range(len(redis["command"]))]
            )
        yield worker.stop_instance()

    @defer.inlineCallbacks
    def test_a_role_that_cannot_be_made_fails_the_start_and_leaves_nothing(self):
        worker = yield self.make_worker("integration")
        self.engine.exec_exit_code = 2
        with self.assertRaises(LatentWorkerCannotSubstantiate) as raised:
            yield worker.start_instance(build_with())
        self.assertIn(
            "postgres (namaskah-ci/postgres:15): setting it up for the job failed (exit code 2)", str(raised.exception)
        )
        self.assertEqual(self.engine.running(), [])

    @defer.inlineCallbacks
    def test_the_worker_container_starts_while_the_services_get_ready(self):
        worker = yield self.make_worker("integration")
        pending: defer.Deferred[Any] = defer.Deferred()
        real = threads.deferToThread

        def to_thread(function, *args, **kwargs):  # the readiness wait stays pending until told
            return pending if function == worker._thd_wait_ready else real(function, *args, **kwargs)

        with mock.patch.object(threads, "deferToThread", side_effect=to_thread):
            starting = worker.start_instance(build_with())
            roles = sorted(c["Labels"][ds.LABEL_ROLE] for c in self.engine.running())
            self.assertEqual(roles, ["postgres", "redis", "worker"])  # the worker did not wait for them
            self.assertFalse(starting.called)  # the build waits for both
            self.assertIsNotNone(worker.services_ready)
            pending.callback(None)
            yield starting
        self.assertIsNone(worker.services_ready)
        yield worker.stop_instance()
        self.assertEqual(self.engine.running(), [])

    @defer.inlineCallbacks
    def test_a_worker_that_connects_before_its_services_are_ready_waits_for_them(self):
        worker = yield self.make_worker("integration")
        ready: defer.Deferred[bool] = defer.Deferred()
        worker.services_ready = ready
        with mock.patch.object(
            buildbot_docker.DockerLatentWorker, "attached", side_effect=lambda conn: defer.succeed("attached")
        ) as attached:
            connecting = worker.attached("conn")
            self.assertFalse(connecting.called)
            attached.assert_not_called()
            ready.callback(True)
            self.assertEqual((yield connecting), "attached")
            attached.assert_called_once_with("conn")
        failed: defer.Deferred[bool] = defer.Deferred()  # readiness failed: the start says why
        worker.services_ready = failed
        with (
            mock.patch.object(
                buildbot_docker.DockerLatentWorker, "attached", side_effect=lambda conn: defer.succeed("attached")
            ) as attached,
            mock.patch.object(worker, "_disconnect", return_value=defer.succeed(None)) as disconnect,
        ):
            connecting = worker.attached("conn")
            failed.callback(False)
            with self.assertRaises(RuntimeError):
                yield connecting
            attached.assert_not_called()  # the connection does not substantiate the worker
            disconnect.assert_called_once_with("conn")

    @defer.inlineCallbacks
    def test_stop_removes_every_container_of_the_build(self):
        worker = yield self.make_worker("integration")
        yield worker.start_instance(build_with())
        self.assertEqual(len(self.engine.running()), 3)
        yield worker.stop_instance()
        self.assertEqual(self.engine.running(), [])
        self.assertIsNone(worker.service_state)
        self.assertIsNone(worker.service_env)
        self.assertEqual(worker.ports._held, set())

    @defer.inlineCallbacks
    def test_a_reconfiguration_during_a_build_keeps_its_services(self):
        worker = yield self.make_worker("integration")
        build = build_with()
        yield worker.start_instance(build)
        settings = docker_settings(instance_name="unit-master", service_ready_timeout=30)  # a changed config
        sibling = dc.make_job_worker(settings, entry_of(REGISTRY, "integration"), settings.workers.docker_host)
        yield worker.reconfigServiceWithSibling(sibling)
        self.assertEqual(worker.ready_timeout, 30)
        self.assertEqual(worker.service_env["DATABASE_URL"], self.worker_env()["DATABASE_URL"])
        self.assertEqual(worker.createEnvironment()["REDIS_URL"], self.worker_env()["REDIS_URL"])
        yield worker.stop_instance()
        self.assertEqual(self.engine.running(), [])
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
        self.assertNotIn("REDIS_URL", self.worker_env())
        yield worker.stop_instance()

    @defer.inlineCallbacks
    def test_a_job_without_services_starts_only_its_worker(self):
        worker = yield self.make_worker("lint")
        build = build_with()
        yield worker.start_instance(build)
        self.assertEqual([c["Labels"][ds.LABEL_ROLE] for c in self.engine.running()], ["worker"])
        self.assertNotIn("DATABASE_URL", self.worker_env())
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
        self.assertRegex(self.worker_env()["REDIS_URL"], r"^redis://default:[0-9a-f]{24}@redis:6379/0$")
        self.assertIn("@postgres:5432/", self.worker_env()["DATABASE_URL"])
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
        self.assertEqual(self.engine.volume_store["namaskah-ci-cache-py3.9"]["Labels"][ds.LABEL_ROLE], "cache")
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
        self.assertIn("namaskah-ci-cache-py3.9", self.engine.volume_store)
        self.assertIn("DATABASE_URL", self.worker_env())
        yield worker.stop_instance()
        self.assertEqual(self.engine.running(), [])

    @defer.inlineCallbacks
    def test_a_job_at_another_python_without_tools_runs_in_that_pythons_image(self):
        worker = yield self.make_worker("lint")
        yield worker.start_instance(
            build_with(job_property("lint", "version: 1\njobs:\n  lint: {python: '3.9', steps: [x]}\n"))
        )
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


class ExtraHostTests(WorkerTestBase):
    @defer.inlineCallbacks
    def test_an_extra_host_gets_random_ports_from_the_range(self):
        settings = docker_settings(instance_name="unit-master", extra_docker_hosts=["unix:///run/build2.sock"])
        entry = entry_of(REGISTRY, "integration")
        first = dc.make_job_worker(settings, entry, settings.workers.docker_host, 0)
        extra = dc.make_job_worker(settings, entry, "unix:///run/build2.sock", 1)
        for worker in (first, extra):
            worker.setServiceParent(self.master)
        yield self.master.startService()
        self.addCleanup(self.master.stopService)
        self.assertEqual(extra.name, "docker-integration-h2")
        assert first.ports is not None and extra.ports is not None
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


class ContainerWatchTests(WorkerTestBase):
    """While a build runs, its containers are inspected every `watch_interval` seconds (in a thread)."""

    @defer.inlineCallbacks
    def start_build(self, builder: str = "integration"):
        worker = yield self.make_worker(builder)
        build = build_with()
        yield worker.start_instance(build)
        return worker, build

    def kill(self, role: str, code: int | None = 137, oom: bool = False) -> None:
        """The container of `role` exits with `code` (`docker kill`: 137), or is removed (None)."""
        [container] = self.engine.running(role)
        inspect = self.engine.inspect_container

        def inspect_container(container_id):
            if container_id != container["Id"]:
                return inspect(container_id)
            if code is None:  # what docker-py raises for a container that is gone
                raise self.docker.errors.NotFound(f"404 Client Error: No such container: {container_id}")
            return {"State": {"Running": False, "ExitCode": code, "OOMKilled": oom}}

        self.patch(self.engine, "inspect_container", inspect_container)

    @defer.inlineCallbacks
    def test_a_killed_service_stops_the_build_within_one_interval_naming_it(self):
        worker, build = yield self.start_build()
        self.reactor.advance(worker.watch_interval)
        self.assertEqual(build.stops, [])  # healthy: nothing happens
        self.kill("postgres")
        self.reactor.advance(worker.watch_interval)
        reason = "service container postgres exited (code 137) during the build"
        self.assertEqual(build.stops, [(reason, EXCEPTION)])
        self.reactor.advance(worker.watch_interval * 3)
        self.assertEqual(len(build.stops), 1)  # once
        yield worker.stop_instance()
        self.assertEqual(self.engine.running(), [])
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    @defer.inlineCallbacks
    def test_a_removed_service_and_an_out_of_memory_one_say_so(self):
        worker, build = yield self.start_build()
        self.kill("redis", code=None)
        self.reactor.advance(worker.watch_interval)
        self.assertEqual(build.stops, [("service container redis was removed during the build", EXCEPTION)])
        yield worker.stop_instance()
        oom = docker_watch.fault_reason("postgres", {"Running": False, "ExitCode": 137, "OOMKilled": True})
        self.assertEqual(oom, "service container postgres exited (code 137, out of memory) during the build")

    @defer.inlineCallbacks
    def test_a_dead_worker_container_retries_the_build_saying_so_and_drops_its_connection(self):
        worker, build = yield self.start_build("lint")  # no services: the worker container is watched too
        self.kill("worker")
        worker.conn = conn = mock.Mock()
        worker.watch.check_now()  # what a lost connection does: no waiting for the next interval
        self.assertEqual(build.stops, [("worker container exited (code 137) during the build", RETRY)])
        conn.loseConnection.assert_called_once_with()
        worker.conn = None
        yield worker.stop_instance()
        self.assertEqual(self.engine.running(), [])

    @defer.inlineCallbacks
    def test_an_engine_that_does_not_answer_is_not_a_fault(self):
        worker, build = yield self.start_build()

        def unreachable(container_id):
            raise ConnectionError("engine busy")

        self.patch(self.engine, "inspect_container", unreachable)
        self.reactor.advance(worker.watch_interval * 3)
        self.assertEqual(build.stops, [])
        self.assertTrue(worker.watch._loop.running)
        yield worker.stop_instance()
        self.assertIsNone(worker.watch)
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    @defer.inlineCallbacks
    def test_stopping_the_build_removes_nothing_before_the_watch_stops(self):
        worker, build = yield self.start_build()
        watch = worker.watch
        yield worker.stop_instance()  # removing the containers is no fault
        self.reactor.advance(worker.watch_interval * 2)
        self.assertEqual(build.stops, [])
        self.assertIsNone(watch._client)  # closed
        self.assertFalse(watch._loop.running)

    def test_a_stopped_build_ends_with_the_faults_results_not_cancelled(self):
        build = FakeBuild()
        docker_watch.stop_build(build, "service container redis exited (code 1) during the build", EXCEPTION)
        build.stepDone(CANCELLED, None)  # the step the stop interrupted
        build.stepDone(FAILURE, None)
        self.assertEqual(build.steps_done, [EXCEPTION, FAILURE])
        self.assertEqual(build.stops, [("service container redis exited (code 1) during the build", EXCEPTION)])
