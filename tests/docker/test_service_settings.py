"""Docker mode's services as a pipeline file's mappings choose them, against the fake engine: a version is
the image's tag, the database and role are the file's, the worker container gets every variable local mode
gives (DATABASE_URL, PG*, POSTGRES_*, REDIS_*), and a password the file gives comes from the file, never
from (or into) a build property."""

from __future__ import annotations

import json
import time

import docker
import pytest
from buildbot.interfaces import LatentWorkerCannotSubstantiate
from twisted.internet import defer

from namaskah_ci import names
from namaskah_ci.per_master import per_master
from namaskah_ci.pipeline.model import load_pipeline
from namaskah_ci.pipeline.source import PipelineConfig, PipelineSource, SourceState
from namaskah_ci.workers.docker import service_specs
from namaskah_ci.workers.docker import services as ds
from unit_support import WorkerTestBase, build_with, job_property

REVISION = "c" * 40
FILE = """
version: 1
jobs:
  integration:
    requirements: []
    services:
      - {name: postgres, version: "16", database: app_test, user: app%s}
      - {name: redis, version: "7"}
    steps: [pytest]
"""
CHOSEN, GIVEN = FILE % "", FILE % ", password: file-given"


class ServiceSettingsTests(WorkerTestBase):
    @defer.inlineCallbacks
    def test_a_version_is_the_images_tag_and_the_database_and_role_are_the_files(self):
        worker = yield self.make_worker("integration")
        build = build_with(job_property("integration", CHOSEN))
        yield worker.start_instance(build)
        postgres, redis = self.engine.call_args_create_container[:2]
        self.assertEqual((postgres["image"], redis["image"]), ("namaskah-ci/postgres:16", "namaskah-ci/redis:7"))
        self.assertEqual(postgres["environment"]["POSTGRES_DB"], "app_test")
        [made] = self.engine.execs
        sql = " ".join(made["cmd"])
        self.assertIn("CREATE ROLE app LOGIN CREATEDB NOSUPERUSER", sql)
        self.assertIn("ALTER DATABASE app_test OWNER TO app", sql)
        env = self.worker_env()
        port = env["PGPORT"]
        self.assertEqual(
            {key: env[key] for key in ("PGHOST", "PGUSER", "PGDATABASE", "POSTGRES_SERVER", "POSTGRES_HOST")},
            {
                "PGHOST": "127.0.0.1",
                "PGUSER": "app",
                "PGDATABASE": "app_test",
                "POSTGRES_SERVER": "127.0.0.1",
                "POSTGRES_HOST": "127.0.0.1",
            },
        )
        self.assertEqual((env["POSTGRES_PORT"], env["POSTGRES_USER"], env["POSTGRES_DB"]), (port, "app", "app_test"))
        self.assertEqual(env["PGPASSWORD"], env["POSTGRES_PASSWORD"])
        self.assertEqual(env["DATABASE_URL"], f"postgresql://app:{env['PGPASSWORD']}@127.0.0.1:{port}/app_test")
        self.assertEqual(env["REDIS_URL"], f"redis://default:{env['REDIS_PASSWORD']}@127.0.0.1:{env['REDIS_PORT']}/0")
        self.assertEqual(env["REDIS_HOST"], "127.0.0.1")
        properties = json.dumps(build.asDict())
        self.assertNotIn(env["PGPASSWORD"], properties)
        self.assertNotIn(env["REDIS_PASSWORD"], properties)
        yield worker.stop_instance()

    @defer.inlineCallbacks
    def test_a_password_the_file_gives_is_read_from_the_file_at_the_builds_revision(self):
        worker = yield self.make_worker("integration")
        pipeline = load_pipeline(GIVEN, ".namaskah-ci.yml")
        config = PipelineConfig(
            "/srv/repo.git", "/nowhere/poller", "/nowhere/mirror", "/nowhere/d.yml", "d", "", "main"
        )
        reader = PipelineSource(config, per_master(self.master, "pipeline_sources", SourceState))
        reader.cache[REVISION] = pipeline  # the reader the pipeline build used: it parsed the file already
        per_master(self.master, "pipeline_sources", SourceState).sources[config.mirror_dir] = reader
        build = build_with(job_property("integration", GIVEN))
        build.setProperty(names.PROP_JOB_REVISION, REVISION, "Trigger")
        build.setProperty("buildername", "integration", "Build")
        self.assertNotIn("file-given", json.dumps(build.asDict()))
        yield worker.start_instance(build)
        env = self.worker_env()
        self.assertEqual((env["PGPASSWORD"], env["POSTGRES_PASSWORD"]), ("file-given", "file-given"))
        self.assertIn("PASSWORD 'file-given'", " ".join(self.engine.execs[0]["cmd"]))
        self.assertNotEqual(env["REDIS_PASSWORD"], "file-given")  # redis's own: random
        self.assertNotIn("file-given", json.dumps(build.asDict()))
        yield worker.stop_instance()

    @defer.inlineCallbacks
    def test_a_versions_image_the_engine_lacks_fails_naming_the_setting(self):
        worker = yield self.make_worker("integration")
        self.engine.fail_create.add("namaskah-ci/postgres:16")
        with self.assertRaises(LatentWorkerCannotSubstantiate) as raised:
            yield worker.start_instance(build_with(job_property("integration", CHOSEN)))
        self.assertIn(
            "postgres (namaskah-ci/postgres:16) could not be started (the version's tag of [workers] images "
            "'postgres' = namaskah-ci/postgres:15: build or pull namaskah-ci/postgres:16)",
            str(raised.exception),
        )
        self.assertEqual(self.engine.running(), [])


def test_the_image_of_a_version() -> None:
    assert service_specs.service_image("postgres:15", "16") == "postgres:16"
    assert service_specs.service_image("registry:5000/team/postgres:15", "16") == "registry:5000/team/postgres:16"
    assert service_specs.service_image("registry:5000/postgres", "16") == "registry:5000/postgres:16"
    assert service_specs.service_image("redis", "7") == "redis:7"
    assert service_specs.service_image("namaskah-ci/redis:7", "") == "namaskah-ci/redis:7"


@pytest.mark.docker
@pytest.mark.timeout(300)
def test_a_chosen_database_role_and_password_on_the_real_image() -> None:
    """The official-compatible image makes the file's database (POSTGRES_DB) and the role owns it: the
    variables the worker container gets reach it, as `psql` with PG* only."""
    from docker_harness import require_engine_and_images

    require_engine_and_images()
    api = docker.APIClient(version="auto", timeout=60)
    instance = f"test-service-settings-{time.time_ns()}"
    port = ds.PortAllocator(local=True).allocate()
    spec = service_specs.postgres_spec(
        "namaskah-ci/postgres:15", "127.0.0.1", port, "real-given", database="app_test", user="app"
    )
    labels = ds.labels_for(instance, "incarnation-1", "build-1", "service", "docker-test")
    try:
        containers = ds.start_services(api, [spec], labels, "host", instance, timeout=60)
        (container,) = containers
        env = [f"{key}={spec.variables[key]}" for key in ("PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE")]
        asked = "select current_user || ' ' || current_database() || ' ' || pg_get_userbyid(datdba) || ' ' || "
        asked += "(select rolsuper::text from pg_roles where rolname = current_user) from pg_database "
        asked += "where datname = current_database()"
        query = api.exec_create(container, ["psql", "-tAc", asked], environment=env)
        assert api.exec_start(query).decode().strip() == "app app_test app false"
    finally:
        for leftover in api.containers(all=True, filters={"label": f"{ds.LABEL_MASTER}={instance}"}):
            api.remove_container(leftover["Id"], force=True, v=True)
        api.close()
