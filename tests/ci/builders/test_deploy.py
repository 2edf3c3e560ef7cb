"""Config of the deploy part: builders, locks, queue superseding, schedulers, the pipeline's gate."""

from __future__ import annotations

import datetime
import sys
from pathlib import Path

import pytest
from buildbot.process.results import FAILURE, SKIPPED, SUCCESS
from buildbot.schedulers.forcesched import ForceScheduler
from buildbot.schedulers.triggerable import Triggerable

from namaskah_ci.builders.deploy import DeployBuild, deploy_builder_names, make_deploy_gate
from namaskah_ci.config import build_config
from namaskah_ci.settings import load_settings
from namaskah_ci.steps.deploy.gate import DeployGate
from namaskah_ci.steps.deploy.history import supersede_queued
from namaskah_ci.steps.fanout import FanOut, StartAnalysis
from namaskah_ci.steps.load import LoadPipeline

DEPLOY_BUILDERS = ["deploy-production", "rollback-production", "deploy-staging", "rollback-staging"]


@pytest.fixture
def config(tmp_path: Path, monkeypatch):
    env = {
        "PIPELINE_MASTER_BASEDIR": str(tmp_path / "master"),
        "PIPELINE_SECRETS_DIR": str(tmp_path / "secrets"),
        "PIPELINE_WORKERS_INTERPRETERS": f"3.9={sys.executable},3.11={sys.executable}",
        "PIPELINE_CHECKS_REQUIRED": "lint,security",
    }
    built = build_config(load_settings(env))
    built["_env"] = env
    return built


def builders(config) -> dict:
    return {b.name: b for b in config["builders"]}


def step_classes(builder) -> list[type]:
    return [factory.step_class for factory in builder.factory.steps]


def test_deploy_builders_workers_and_locks(config):
    found = builders(config)
    assert deploy_builder_names(load_settings(config["_env"])) == DEPLOY_BUILDERS
    workers_by_name = {w.name for w in config["workers"]}
    for name in DEPLOY_BUILDERS:
        builder = found[name]
        assert builder.collapseRequests is False
        assert set(builder.workernames) <= workers_by_name
        assert builder.factory.buildClass is DeployBuild
        assert len(builder.locks) == 1 and builder.locks[0].mode == "exclusive"
    for env in ("production", "staging"):
        deploy_lock = found[f"deploy-{env}"].locks[0].lockid
        assert deploy_lock is found[f"rollback-{env}"].locks[0].lockid
        assert deploy_lock.name == f"deploy-{env}"
    assert found["deploy-production"].locks[0].lockid is not found["deploy-staging"].locks[0].lockid
    assert found["deploy-production"].nextBuild is supersede_queued
    assert found["rollback-production"].nextBuild is None


def test_pipeline_gates_after_the_fan_out(config):
    classes = step_classes(builders(config)["pipeline"])
    assert classes == [LoadPipeline, FanOut, StartAnalysis, DeployGate]  # analysis: codeql on main, not waited for
    gate = builders(config)["pipeline"].factory.steps[-1]
    assert gate.kwargs["branch_schedulers"] == {
        "main": "deploy-production-after-pipeline",
        "develop": "deploy-staging-after-pipeline",
    }
    assert gate.kwargs["required"] == ["lint", "security"]


def test_schedulers(config):
    scheds = {s.name: s for s in config["schedulers"]}
    for env in ("production", "staging"):
        trigger = scheds[f"deploy-{env}-after-pipeline"]
        assert isinstance(trigger, Triggerable) and trigger.builderNames == [f"deploy-{env}"]
        deploy = scheds[f"force_deploy_{env}"]
        assert isinstance(deploy, ForceScheduler) and deploy.builderNames == [f"deploy-{env}"]
        kwargs = deploy._config_kwargs
        assert kwargs["reason"].required
        assert [p.name for p in kwargs["properties"]] == ["override_gate", "redeploy"]
        (codebase,) = kwargs["codebases"]
        branch = {"production": "main", "staging": "develop"}[env]
        fields = {f.name: f for f in codebase.fields}
        assert fields["branch"].default == branch and type(fields["branch"]).__name__ == "FixedParameter"
        assert fields["revision"].default == ""
        rollback = scheds[f"force_rollback_{env}"]
        assert rollback.builderNames == [f"rollback-{env}"]
        assert rollback._config_kwargs["reason"].required
        assert [p.name for p in rollback._config_kwargs["properties"]] == ["rollback_target"]
    # the deploy and rollback builders are reachable only through these schedulers
    for name in DEPLOY_BUILDERS:
        reaching = [s.name for s in config["schedulers"] if name in s.builderNames]
        assert len(reaching) == (2 if name.startswith("deploy") else 1)


def test_the_gate_is_fresh_per_call(config):
    settings = load_settings({})
    assert make_deploy_gate(settings) is not make_deploy_gate(settings)


class FakeRequest:
    def __init__(self, brid, minute):
        self.id = brid
        self.submittedAt = datetime.datetime(2026, 1, 1, 12, minute, tzinfo=datetime.UTC)


def test_the_newest_queued_request_goes_first_and_none_is_cancelled():
    """The older ones run after it and skip themselves naming the newer revision (NotOutdated)."""
    assert supersede_queued(None, [FakeRequest(7, 5), FakeRequest(5, 1), FakeRequest(6, 3)]).id == 7
    assert supersede_queued(None, [FakeRequest(5, 1)]).id == 5
    assert supersede_queued(None, []) is None


def test_deploy_build_summary_is_the_outcome_alone():
    finished = []
    build = DeployBuild.__new__(DeployBuild)
    build.results, build.text, build.stopped_reason = FAILURE, ["deployed abc, health check failed"], None
    build.getProperty = lambda name, default=None: None
    build.buildFinished = lambda text, results: finished.append((text, results))
    build.allStepsDone()
    assert finished == [(["deployed abc, health check failed"], FAILURE)]


def test_not_configured_build_ends_skipped():
    finished = []
    build = DeployBuild.__new__(DeployBuild)
    build.results = SUCCESS
    build.getProperty = lambda name, default=None: "not configured: no render_deploy_hook secret"
    build.buildFinished = lambda text, results: finished.append((text, results))
    build.allStepsDone()
    assert finished == [(["not configured: no render_deploy_hook secret"], SKIPPED)]
    assert build.results == SKIPPED
