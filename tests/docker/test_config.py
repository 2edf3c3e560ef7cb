"""Unit tests of the docker-mode configuration (pure functions of the settings, no engine):
which image, volumes and CPU share a job's container gets, the workers and builders in
docker mode, the plan the job builds follow (python3 in the image, helpers copied into each
build, known Pythons from the image keys) and the job environment with the images' CA bundle.
(The worker classes against a fake engine: `test_docker_workers_unit.py`.)
"""

from __future__ import annotations

import dataclasses

from buildbot.process.properties import Properties
from buildbot.util import ComparableMixin
from twisted.trial import unittest

from namaskah_ci import names
from namaskah_ci.builders.setup import make_job_setup, make_policy
from namaskah_ci.config import build_config
from namaskah_ci.jobs import commands as job_commands
from namaskah_ci.settings import load_settings
from namaskah_ci.steps.job_steps import job_steps
from namaskah_ci.steps.load import LoadJob
from namaskah_ci.steps.services import StartServices
from namaskah_ci.workers.docker import config as dc
from namaskah_ci.workers.docker.service_worker import ServiceDockerWorker
from pipeline_support import entry_of, job_of
from unit_support import PIPELINE, REGISTRY, docker_settings


def on_branch(branch: str) -> Properties:
    props = Properties()
    props.setProperty("branch", branch, "test")
    return props


class ContainerChoiceTests(unittest.TestCase):
    """What `_JobValues` renders for a build, and `image_for`'s order of keys."""

    def test_images_per_builder_job_tools_and_python(self):
        settings = docker_settings(images={**docker_settings().workers.images, "test-py3.9": "mirror/py39:1"})

        def image(builder):
            entry = entry_of(REGISTRY, builder)
            return dc.image_for(settings, entry.builder, entry.job, entry.python, entry.tools)

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
            builder: dc._JobValues(settings, entry_of(REGISTRY, builder)).hostconfig(Properties())["cpu_shares"]
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
        volumes = dc._JobValues(settings, entry_of(REGISTRY, "lint")).volumes(on_branch("main"))
        self.assertEqual(volumes, ["namaskah-ci-cache-py3.11:/cache", "/srv/repo:/srv/repo:ro"])

    def test_a_forks_pull_request_gets_its_own_cache_and_never_the_docker_socket(self):
        settings = docker_settings()
        values = dc._JobValues(settings, entry_of(REGISTRY, "container-scan"))
        trusted = values.volumes(on_branch("main"))
        self.assertIn("namaskah-ci-cache-py3.11:/cache", trusted)
        self.assertIn(f"{dc.DOCKER_SOCKET}:{dc.DOCKER_SOCKET}", trusted)
        fork = on_branch("refs/pull/7/merge")
        fork.setProperty("pr_fork", True, "test")
        untrusted = values.volumes(fork)
        [cache] = [v for v in untrusted if v.endswith(":/cache")]
        self.assertRegex(cache, r"^namaskah-ci-cache-py3\.11-refs-pull-7-merge-[0-9a-f]{12}-untrusted:/cache$")
        self.assertFalse([v for v in untrusted if dc.DOCKER_SOCKET in v or v.startswith("namaskah-ci-cache-py3.11:")])


class ConfigTests(unittest.TestCase):
    def test_every_job_builder_gets_a_docker_worker_and_the_pipeline_a_local_one(self):
        config = build_config(docker_settings(engine_jobs=1), REGISTRY)
        workers = {w.name: w for w in config["workers"]}
        builders = {b.name: b for b in config["builders"]}
        self.assertEqual(
            builders["pipeline"].workernames,
            ["local-pipeline", "local-pipeline-s2", "local-pipeline-s3", "local-pipeline-s4"],
        )
        self.assertEqual(type(workers["local-pipeline"]).__name__, "LocalWorker")
        for builder in REGISTRY.builders:
            # its docker worker, and the master-side one that shows a reused result (no job runs there)
            name, reuse = builders[builder].workernames
            self.assertEqual((name, reuse), (names.docker_worker_name(builder), names.REUSE_WORKER))
            self.assertIs(type(workers[name]), ServiceDockerWorker, builder)
            [load] = builders[builder].factory.steps
            self.assertIs(load.step_class, LoadJob)
        self.assertEqual(set(REGISTRY.builders), {job.builder for job in PIPELINE.jobs})

    def test_an_unchanged_configuration_gives_equivalent_workers(self):
        """A reconfiguration (each new job brings one) leaves unchanged workers alone, even mid-build."""
        host = docker_settings().workers.docker_host
        first = dc.make_job_worker(docker_settings(), entry_of(REGISTRY, "integration"), host)
        again = dc.make_job_worker(docker_settings(), entry_of(REGISTRY, "integration"), host)
        self.assertTrue(ComparableMixin.isEquivalent(first, again))
        moved = dataclasses.replace(entry_of(REGISTRY, "integration"), python="3.9")
        self.assertFalse(ComparableMixin.isEquivalent(first, dc.make_job_worker(docker_settings(), moved, host)))

    def test_extra_docker_hosts_give_each_builder_one_worker_per_host(self):
        config = build_config(
            docker_settings(extra_docker_hosts=["tcp://worker2.example:2376"], engine_jobs=1), REGISTRY
        )
        builders = {b.name: b.workernames for b in config["builders"]}
        self.assertEqual(builders["lint"], ["docker-lint", "docker-lint-h2", names.REUSE_WORKER])
        workers = {w.name: w for w in config["workers"]}
        self.assertEqual(len([w for w in workers if w.startswith("docker-")]), 2 * len(REGISTRY.builders))
        # two jobs at once per engine: each builder has two workers on each
        config = build_config(
            docker_settings(extra_docker_hosts=["tcp://worker2.example:2376"], engine_jobs=2), REGISTRY
        )
        builders = {b.name: b for b in config["builders"]}
        self.assertEqual(
            builders["lint"].workernames,
            ["docker-lint", "docker-lint-h2", "docker-lint-s2", "docker-lint-h2-s2", names.REUSE_WORKER],
        )
        self.assertEqual(builders["lint"].locks.lock.maxCount, 4)  # engines x engine_jobs
        hosts = {w.name: w._config_kwargs["docker_host"] for w in config["workers"] if w.name.startswith("docker-lint")}
        self.assertEqual(hosts["docker-lint-h2-s2"], "tcp://worker2.example:2376")

    def test_the_docker_plan(self):
        plan = dc.make_docker_plan(docker_settings(extra_docker_hosts=["unix:///run/b2.sock"]))
        self.assertEqual((plan.mode, plan.runner, plan.cache_root), ("docker", "python3", "/cache"))
        self.assertEqual(plan.helpers_dir, "../.namaskah-ci/helpers")
        self.assertTrue(plan.transfer_helpers and plan.services_in_worker)
        self.assertEqual(plan.hosts, 2)
        self.assertEqual(plan.job_workers("lint")[:2], ["docker-lint", "docker-lint-h2"])
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
        steps = job_steps(job_of(PIPELINE, "integration"), setup, "python3")
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
            tests.command[:7],
            ["python3", "../.namaskah-ci/helpers/ci_step.py", "--job-dir", "../.namaskah-ci", "run", "--step", "--"],
        )
        self.assertEqual(tests.env, {})  # the services' URLs come from the worker container
        scan = job_steps(job_of(PIPELINE, "container-scan"), setup, "python3")
        [tools] = [s for s in scan if s.name == "required tools"]
        self.assertEqual(
            tools.command[-4:], ["python3", "../.namaskah-ci/helpers/ci_require_tools.py", "docker", "trivy"]
        )

    def test_the_job_environment_is_built_from_scratch_with_the_images_ca_bundle(self):
        settings = docker_settings(
            app_base_image="namaskah-ci/base:bookworm", job_env={"PIP_INDEX_URL": "http://m/simple"}
        )
        setup = make_job_setup(settings, dc.make_docker_plan(settings))
        job = job_of(PIPELINE, "container-scan")
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
            job_of(PIPELINE, "integration"), setup.layout, interpreter="python3", base_path="/bin", worker_env={}
        )["pass"], [*job_commands.SERVICE_ENV["postgres"], *job_commands.SERVICE_ENV["redis"]])  # fmt: skip

    def test_settings_reject_an_unknown_network_mode(self):
        from namaskah_ci.settings_checks import SettingsError

        with self.assertRaises(SettingsError) as caught:
            load_settings({"PIPELINE_WORKERS_NETWORK_MODE": "bridge"})
        self.assertIn("network_mode", str(caught.exception))
