"""StartServices / StopServices: the per-build PostgreSQL and Redis steps (local mode).

The servers' URLs (their passwords) stay on the worker, in the job directory's services.env: the step
sets no property and shows only where the servers are."""

from __future__ import annotations

from buildbot.process.results import FAILURE, SUCCESS
from buildbot.test.reactor import TestReactorMixin
from buildbot.test.steps import ExpectShell, TestBuildStepMixin
from twisted.internet import defer
from twisted.trial import unittest

from namaskah_ci.jobs.commands import JobLayout, services_argv
from namaskah_ci.pipeline.model import load_pipeline
from namaskah_ci.steps.services import STATE_DIR, StartServices, StopServices, service_addresses
from pipeline_support import job_of

DB_URL = "postgresql://namaskah:pg-5ecret@127.0.0.1:45432/namaskah"
REDIS_URL = "redis://default:redis-5ecret@127.0.0.1:46379/0"
SHOWN = (
    "postgres: 127.0.0.1:45432 (database namaskah, user namaskah; DATABASE_URL)\nredis: 127.0.0.1:46379 (REDIS_URL)\n"
)
LAYOUT = JobLayout(runner="/opt/py", helpers_dir="/opt/helpers", cache_root="/c")
STOP = services_argv(LAYOUT, "stop", STATE_DIR)


def start_command(*services: str, timeout: int = 60) -> list[str]:
    text = f"version: 1\njobs:\n  j:\n    services: [{', '.join(services)}]\n    steps: [x]\n"
    return services_argv(LAYOUT, "start", STATE_DIR, job_of(load_pipeline(text, "f"), "j"), timeout=timeout)


def test_the_helper_comes_with_the_master():
    env_file = "../.namaskah-ci/services.env"  # in the job directory, where ci_step.py reads it
    assert start_command("postgres", "redis") == [
        "/opt/py",
        "/opt/helpers/ci_services.py",
        "start",
        "--state-dir",
        STATE_DIR,
        "--env-file",
        env_file,
        "--timeout",
        "60",
        "--postgres",
        "--redis",
    ]
    assert ["/opt/py", "/opt/helpers/ci_services.py", "stop", "--state-dir", STATE_DIR, "--env-file", env_file] == STOP


class ServiceAddressesTest(unittest.TestCase):
    def test_picks_where_each_server_is(self):
        out = f"starting\n{SHOWN}redis is nice: 1\n"
        self.assertEqual(service_addresses(out), ["postgres 127.0.0.1:45432", "redis 127.0.0.1:46379"])

    def test_nothing_printed_gives_nothing(self):
        self.assertEqual(service_addresses(""), [])


# Buildbot's fake data API accepts only identifiers as step names (the real one takes any name up to
# 50 characters), so the steps run here under explicit names; the default names are checked directly.


class StepDefaultsTest(unittest.TestCase):
    def test_names_and_flags(self):
        start = StartServices(("postgres", "redis"), start_command("postgres", "redis"))
        self.assertEqual(start.name, "start postgres + redis")
        self.assertTrue(start.haltOnFailure)
        self.assertFalse(start.logEnviron)
        self.assertEqual(StartServices(("redis",), start_command("redis")).name, "start redis")
        stop = StopServices(STOP)
        self.assertEqual(stop.name, "stop services")
        self.assertFalse(stop.logEnviron)


class StartServicesTest(TestBuildStepMixin, TestReactorMixin, unittest.TestCase):
    def setUp(self):
        self.setup_test_reactor()
        return self.setup_test_build_step()

    @defer.inlineCallbacks
    def test_says_where_both_are_and_sets_no_property(self):
        yield self.setup_step(
            StartServices(("postgres", "redis"), start_command("postgres", "redis"), env={"A": "1"}, name="start")
        )
        self.expect_commands(
            ExpectShell(workdir="wkdir", command=start_command("postgres", "redis"), env={"A": "1"}, log_environ=False)
            .stdout(SHOWN)
            .exit(0)
        )
        self.expect_outcome(result=SUCCESS, state_string="started postgres 127.0.0.1:45432, redis 127.0.0.1:46379")
        self.expect_no_property("DATABASE_URL")
        self.expect_no_property("REDIS_URL")
        yield self.run_step()

    @defer.inlineCallbacks
    def test_urls_printed_by_a_helper_never_become_properties(self):
        """The passwords of every job's servers (all on 127.0.0.1) must not reach the REST API."""
        yield self.setup_step(StartServices(("postgres",), start_command("postgres", timeout=90), name="start"))
        self.expect_commands(
            ExpectShell(workdir="wkdir", command=start_command("postgres", timeout=90), log_environ=False)
            .stdout(f"DATABASE_URL={DB_URL}\nREDIS_URL={REDIS_URL}\n")
            .exit(0)
        )
        self.expect_outcome(result=SUCCESS, state_string="started postgres")
        self.expect_no_property("DATABASE_URL")
        self.expect_no_property("REDIS_URL")
        yield self.run_step()

    @defer.inlineCallbacks
    def test_fails_when_the_script_fails(self):
        yield self.setup_step(StartServices(("postgres", "redis"), start_command("postgres", "redis"), name="start"))
        self.expect_commands(
            ExpectShell(workdir="wkdir", command=start_command("postgres", "redis"), log_environ=False)
            .stderr("ci_services: initdb not found: install postgresql-15\n")
            .exit(3)
        )
        self.expect_outcome(result=FAILURE)
        self.expect_no_property("REDIS_URL")
        yield self.run_step()
        summary = yield self.get_nth_step(0).getResultSummary()
        self.assertEqual(summary, {"step": "initdb not found: install postgresql-15", "build": summary["step"]})


class StopServicesTest(TestBuildStepMixin, TestReactorMixin, unittest.TestCase):
    def setUp(self):
        self.setup_test_reactor()
        return self.setup_test_build_step()

    @defer.inlineCallbacks
    def test_stops_the_same_state_directory(self):
        yield self.setup_step(StopServices(STOP, alwaysRun=True, name="stop"))
        self.expect_commands(
            ExpectShell(workdir="wkdir", command=STOP, log_environ=False).stdout("stopped postgres\n").exit(0)
        )
        self.expect_outcome(result=SUCCESS)
        yield self.run_step()
        self.assertTrue(self.get_nth_step(0).alwaysRun)

    @defer.inlineCallbacks
    def test_a_failed_stop_is_a_failure(self):
        yield self.setup_step(StopServices(STOP, name="stop"))
        self.expect_commands(ExpectShell(workdir="wkdir", command=STOP, log_environ=False).exit(1))
        self.expect_outcome(result=FAILURE)
        yield self.run_step()
