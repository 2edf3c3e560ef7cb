"""`build_config(settings, registry)`: builder names, scheduler wiring, force parameters, the job
registry, deploy environments as open data, fresh objects on every call, and no secret as plain text."""

from __future__ import annotations

import os
import sys
import types
from pathlib import Path

import bcrypt
import pytest
from buildbot.config.errors import ConfigErrors
from buildbot.schedulers.basic import AnyBranchScheduler, SingleBranchScheduler
from buildbot.schedulers.forcesched import ForceScheduler
from buildbot.schedulers.timed import Nightly
from buildbot.schedulers.triggerable import Triggerable

from namaskah_ci import names
from namaskah_ci.config import ConfigError, build_config
from namaskah_ci.pipeline.model import load_pipeline_file
from namaskah_ci.pipeline.registry import Registry
from namaskah_ci.secrets import SECRET_NAMES, OwnerOnlySecretInAFile, make_secret_providers
from namaskah_ci.settings import ROOT, load_settings
from namaskah_ci.steps.deploy.gate import DeployGate
from namaskah_ci.steps.fanout import FanOut, StartAnalysis
from namaskah_ci.steps.load import LoadJob, LoadPipeline
from pipeline_support import SEED_CHECKS

PRESENT = ["pipeline", *SEED_CHECKS, "codeql", "performance"]
DESIGN_BUILDERS = {*PRESENT, "deploy-production", "deploy-staging", "rollback-production", "rollback-staging"}
# the builders a master has once the reference service's pipeline ran on main
SEED_REGISTRY = Registry().merge(load_pipeline_file(str(ROOT / ".namaskah-ci.yml")), default_branch=True)


def isolated_env(tmp: Path) -> dict[str, str]:
    """Settings that touch nothing outside `tmp` (no secrets directory yet)."""
    return {
        "PIPELINE_MASTER_BASEDIR": str(tmp / "master"),
        "PIPELINE_SECRETS_DIR": str(tmp / "secrets"),
        "PIPELINE_WORKERS_INTERPRETERS": f"3.9={sys.executable},3.11={sys.executable}",
    }


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    return isolated_env(tmp_path)


@pytest.fixture(scope="module")
def default_config(tmp_path_factory) -> dict:
    """One config with default settings and the seed's builders, shared by the tests that only read it."""
    return build_config(load_settings(isolated_env(tmp_path_factory.mktemp("config"))), SEED_REGISTRY)


def config_for(env: dict[str, str], registry: Registry = SEED_REGISTRY, **extra: str) -> dict:
    return build_config(load_settings({**env, **extra}), registry)


def by_name(items) -> dict:
    return {item.name: item for item in items}


def steps_of(builder) -> list:
    return [factory.buildStep() for factory in builder.factory.steps]


# --- builders and schedulers ----------------------------------------------------------------------


def test_a_new_master_has_the_pipeline_and_deploy_builders_only(env):
    config = build_config(load_settings(env))
    assert [b.name for b in config["builders"]] == [
        "pipeline",
        "deploy-production",
        "rollback-production",
        "deploy-staging",
        "rollback-staging",
    ]
    forced = {b for s in config["schedulers"] if isinstance(s, ForceScheduler) for b in s.builderNames}
    assert "pipeline" in forced


def test_the_registry_in_the_basedir_gives_the_job_builders(env):
    from namaskah_ci.pipeline.registry import write_registry

    basedir = Path(env["PIPELINE_MASTER_BASEDIR"])
    write_registry(str(basedir / "pipeline-builders.json"), SEED_REGISTRY)
    assert {b.name for b in build_config(load_settings(env))["builders"]} == DESIGN_BUILDERS


def test_a_registry_past_the_limit_is_bounded_when_the_master_starts_not_at_a_reconfiguration(env):
    """A registry that grew before [limits] registered_builders existed loads bounded at the start (the builders
    unused longest retired, scheduled ones last, and written back); a reconfiguration reads it as written (a
    pipeline bounded it, keeping builders with a running build)."""
    import dataclasses

    from namaskah_ci.config import load_registry
    from namaskah_ci.pipeline.registry import read_registry, write_registry

    basedir = Path(env["PIPELINE_MASTER_BASEDIR"])
    path = str(basedir / "pipeline-builders.json")
    entries = list(SEED_REGISTRY.entries)
    scheduled = {entry.builder for entry in entries if entry.schedule}
    grown = Registry(tuple(dataclasses.replace(entry, last_used=1000 + index) for index, entry in enumerate(entries)))
    write_registry(path, grown)
    settings = load_settings({**env, "PIPELINE_LIMITS_REGISTERED_BUILDERS": str(len(scheduled) + 3)})
    newest = [entry.builder for entry in sorted(grown.entries, key=lambda e: e.last_used) if not entry.schedule]
    kept = {*scheduled, *newest[-3:]}
    assert len(scheduled) > 0 and len(kept) < len(grown.entries)
    assert set(load_registry(settings).builders) == kept
    assert set(read_registry(path).builders) == kept  # written back: a later reconfiguration agrees
    write_registry(path, grown)  # over the limit again, as a pipeline keeping running builders leaves it
    assert set(load_registry(settings).builders) == set(grown.builders)
    job_builders = {b.name for b in build_config(settings)["builders"]} - {"pipeline"}
    assert {name for name in job_builders if not name.startswith(("deploy-", "rollback-"))} == set(grown.builders)


def test_a_corrupt_registry_is_one_line_naming_the_file(env):
    basedir = Path(env["PIPELINE_MASTER_BASEDIR"])
    basedir.mkdir(parents=True)
    (basedir / "pipeline-builders.json").write_text("{not json")
    with pytest.raises(ConfigError, match=r"pipeline-builders\.json: unreadable job registry"):
        build_config(load_settings(env))


def test_builder_names_are_the_design_names(default_config):
    names = [b.name for b in default_config["builders"]]
    assert len(names) == len(set(names)) and set(names) == DESIGN_BUILDERS


def test_every_builder_has_a_worker_that_exists(default_config):
    workers = {w.name for w in default_config["workers"]}
    for builder in default_config["builders"]:
        assert builder.workernames and set(builder.workernames) <= workers, builder.name


def test_each_job_has_a_triggerable_and_a_force_scheduler(default_config):
    schedulers = default_config["schedulers"]
    for check in [*SEED_CHECKS, "codeql", "performance"]:
        triggerables = [s for s in schedulers if isinstance(s, Triggerable) and check in s.builderNames]
        forces = [s for s in schedulers if isinstance(s, ForceScheduler) and check in s.builderNames]
        assert [t.name for t in triggerables] == [f"check-{check}"] and triggerables[0].builderNames == [check]
        assert len(forces) == 1, check


def test_force_schedulers_ask_for_branch_and_revision(default_config):
    for scheduler in default_config["schedulers"]:
        if scheduler.name in (names.RERUN_SCHEDULER, names.APPROVE_SCHEDULER):  # a build or PR number: its own
            continue
        if isinstance(scheduler, ForceScheduler) and set(scheduler.builderNames) <= set(PRESENT):
            (codebase,) = scheduler._config_kwargs["codebases"]
            fields = {f.name: f for f in codebase.fields}
            assert fields["branch"].default == "main" and fields["revision"].default == ""


def test_pushes_go_to_the_pipeline_only(default_config):
    schedulers = default_config["schedulers"]
    (push,) = [s for s in schedulers if isinstance(s, AnyBranchScheduler) and not isinstance(s, SingleBranchScheduler)]
    assert push.builderNames == ["pipeline"]
    triggered = {s.name: s.builderNames for s in schedulers if isinstance(s, Triggerable)}
    assert all("pipeline" not in names for names in triggered.values())


def test_the_pipeline_reads_its_file_fans_out_starts_analysis_then_gates(default_config):
    pipeline = by_name(default_config["builders"])["pipeline"]
    steps = steps_of(pipeline)
    assert [type(s) for s in steps] == [LoadPipeline, FanOut, StartAnalysis, DeployGate]
    load, fanout, analysis = steps[:3]
    assert load.haltOnFailure and fanout.waitForFinish and fanout.updateSourceStamp is False
    assert analysis.waitForFinish is False and analysis.alwaysRun is True
    assert load.config.policy.job_secrets == ("codecov_token", "safety_api_key")
    assert load.config.registry_path.endswith("pipeline-builders.json")


def test_every_job_builder_shares_one_factory_that_loads_the_job(default_config):
    builders = by_name(default_config["builders"])
    factories = {id(builders[name].factory) for name in [*SEED_CHECKS, "codeql"]}
    assert len(factories) == 1
    (load,) = steps_of(builders["lint"])
    assert isinstance(load, LoadJob) and load.setup.mode == "local" and load.setup.coverage_min == 40
    assert load.setup.layout.helpers_dir.endswith("namaskah_ci/helpers")


def test_disabled_checks_reach_the_fan_out_and_stay_forceable(env):
    config = config_for(env, PIPELINE_CHECKS_DISABLED="lint,security", PIPELINE_CHECKS_REQUIRED="test-py3.11")
    load, fanout = steps_of(by_name(config["builders"])["pipeline"])[:2]
    assert load.disabled == ("lint", "security") and fanout.disabled == ("lint", "security")
    forced = {b for s in config["schedulers"] if isinstance(s, ForceScheduler) for b in s.builderNames}
    assert {"lint", "security"} <= forced


def test_schedules_come_from_the_registry_on_the_default_branch(env):
    config = config_for(env, PIPELINE_REPO_DEFAULT_BRANCH="trunk")
    nightly = {s.name: s for s in config["schedulers"] if isinstance(s, Nightly)}
    assert sorted(nightly) == [
        "schedule-codeql",
        "schedule-container-scan",
        "schedule-secrets-scan",
        "schedule-security",
    ]
    assert nightly["schedule-codeql"].builderNames == ["codeql"]
    kwargs = nightly["schedule-codeql"]._config_kwargs
    assert (kwargs["dayOfWeek"], kwargs["hour"], kwargs["minute"], kwargs["branch"]) == (5, 19, 35, "trunk")
    kwargs = nightly["schedule-security"]._config_kwargs
    assert (kwargs["dayOfWeek"], kwargs["hour"], kwargs["minute"]) == (0, 4, 5)


def test_job_builders_never_collapse_requests(default_config):
    builders = by_name(default_config["builders"])
    for name in [*SEED_CHECKS, "codeql"]:
        assert builders[name].collapseRequests is False, name
    assert builders["codeql"].tags == ["analysis"] and builders["lint"].tags == ["check"]


def test_coverage_min_and_the_job_environment_reach_the_jobs(env):
    config = config_for(
        env, PIPELINE_CHECKS_COVERAGE_MIN="61", PIPELINE_WORKERS_JOB_ENV="PIP_INDEX_URL=https://m/simple"
    )
    (load,) = steps_of(by_name(config["builders"])["test-py3.11"])
    assert load.setup.coverage_min == 61 and dict(load.setup.worker_env)["PIP_INDEX_URL"] == "https://m/simple"


def test_deploy_environments_are_open_data(env, tmp_path):
    overlay = tmp_path / "qa.toml"
    overlay.write_text('[deploy.qa]\nbranch = "qa"\nurl = "https://qa.example"\n[deploy.staging]\nbranch = ""\n')
    config = config_for(env, PIPELINE_CONFIG=str(overlay))
    names = {b.name for b in config["builders"]}
    assert {"deploy-qa", "rollback-qa", "deploy-production"} <= names and "deploy-staging" not in names
    gate = steps_of(by_name(config["builders"])["pipeline"])[-1]
    assert gate.branch_schedulers == {"main": "deploy-production-after-pipeline", "qa": "deploy-qa-after-pipeline"}


def test_core_settings_reach_the_config(env):
    config = config_for(env, PIPELINE_WWW_PORT="8123", PIPELINE_WORKERS_PORT="9123")
    assert config["buildbotNetUsageData"] is None
    assert config["buildbotURL"] == "http://localhost:8123/"
    assert config["www"]["port"] == "tcp:8123:interface=127.0.0.1"
    assert config["protocols"]["pb"]["port"] == "tcp:9123:interface=127.0.0.1"
    assert config["db"]["db_url"] == f"sqlite:///{env['PIPELINE_MASTER_BASEDIR']}/state.sqlite"


def test_a_fresh_config_on_every_call(env):
    settings = load_settings(env)
    first, second = build_config(settings, SEED_REGISTRY), build_config(settings, SEED_REGISTRY)
    assert first is not second
    for key in ("builders", "schedulers", "workers", "change_source", "services", "www"):
        assert first[key] is not second[key], key
    for a, b in zip(first["builders"], second["builders"], strict=True):
        assert a is not b and a.factory is not b.factory and a.factory.steps is not b.factory.steps
    first["builders"].clear()
    first["schedulers"].pop()
    third = build_config(settings, SEED_REGISTRY)
    assert [b.name for b in third["builders"]] == [b.name for b in second["builders"]]
    assert len(third["schedulers"]) == len(second["schedulers"])


# --- secrets --------------------------------------------------------------------------------------


# a bcrypt htpasswd line (`htpasswd -B`), as the admin_htpasswd secret must be
HTPASSWD = "admin:" + bcrypt.hashpw(b"S3CRET-password", bcrypt.gensalt(rounds=4)).decode()


# DESIGN.md's secrets (other optional ones, such as GitHub login, switch features on and need more settings)
DESIGN_SECRETS = (
    "render_deploy_hook",
    "render_rollback_hook",
    "staging_deploy_hook",
    "staging_rollback_hook",
    "render_api_key",
    "render_service_id",
    "codecov_token",
    "github_token",
    "safety_api_key",
    "webhook_secret",
    "notify_webhook_url",
    "admin_htpasswd",
)


def write_secrets(directory: Path, mode: int = 0o600) -> dict[str, str]:
    assert set(DESIGN_SECRETS) <= set(SECRET_NAMES)
    directory.mkdir(mode=0o700, exist_ok=True)
    values = {}
    for name in DESIGN_SECRETS:
        values[name] = HTPASSWD if name == "admin_htpasswd" else f"S3CRET-{name}-d41d8cd98f00b204"
        path = directory / name
        path.write_text(values[name] + "\n")
        path.chmod(mode)
    return values


def strings_in(obj, seen: dict[int, object] | None = None, depth: int = 0):
    """Every string reachable from obj through containers, attributes and closures."""
    seen = {} if seen is None else seen
    if id(obj) in seen or depth > 25 or isinstance(obj, (type, types.ModuleType)):
        return
    seen[id(obj)] = obj  # keeps obj alive, so its id is not reused by a later object
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, bytes):
        yield obj.decode("utf-8", "replace")
    elif isinstance(obj, dict):
        for key, value in obj.items():
            yield from strings_in(key, seen, depth + 1)
            yield from strings_in(value, seen, depth + 1)
    elif isinstance(obj, (list, tuple, set, frozenset)):
        for item in obj:
            yield from strings_in(item, seen, depth + 1)
    elif isinstance(obj, types.FunctionType):
        for cell in obj.__closure__ or ():
            yield from strings_in(cell.cell_contents, seen, depth + 1)
        yield from strings_in(obj.__defaults__, seen, depth + 1)
    elif hasattr(obj, "__dict__") or hasattr(obj, "__slots__"):
        attrs = dict(getattr(obj, "__dict__", {}))
        for slot in getattr(type(obj), "__slots__", ()):
            if isinstance(slot, str) and hasattr(obj, slot):
                attrs[slot] = getattr(obj, slot)
        yield from strings_in(attrs, seen, depth + 1)


def test_no_secret_value_appears_in_the_config(env):
    secrets_dir = Path(env["PIPELINE_SECRETS_DIR"])
    values = write_secrets(secrets_dir)
    config = config_for(env)
    providers = [p for p in config["secretsProviders"] if isinstance(p, OwnerOnlySecretInAFile)]
    assert len(providers) == 1
    found = list(strings_in(config))
    text = repr(config) + "\n".join(found)
    # the search reaches deep enough to see the secrets directory and the builders' commands
    assert str(secrets_dir) in found
    assert any(s.endswith("pipeline-builders.json") for s in found)
    for name, value in values.items():
        assert value not in text, f"the value of secret {name} is in the config"
        assert value[8:] not in text
    assert "S3CRET-password" not in text


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660])
def test_secret_files_readable_by_group_or_others_are_refused_naming_the_file(tmp_path, mode):
    directory = tmp_path / "secrets"
    write_secrets(directory, mode=0o600)
    (directory / "codecov_token").chmod(mode)
    with pytest.raises(ConfigErrors) as info:
        OwnerOnlySecretInAFile(dirname=str(directory))
    path = directory / "codecov_token"
    assert info.value.errors == [
        f"secret file {path} has mode {oct(mode)}: it must be readable by its owner only (run: chmod 600 {path})"
    ]
    with pytest.raises(ConfigErrors, match="codecov_token"):
        build_config(load_settings({**isolated_env(tmp_path), "PIPELINE_SECRETS_DIR": str(directory)}))


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_owner_only_secret_files_are_accepted(tmp_path, mode):
    directory = tmp_path / "secrets"
    write_secrets(directory, mode=mode)
    provider = OwnerOnlySecretInAFile(dirname=str(directory))
    provider.reconfigService(dirname=str(directory))
    assert provider.get("codecov_token") == "S3CRET-codecov_token-d41d8cd98f00b204"


def test_an_absent_secrets_directory_means_no_file_provider(env):
    assert not os.path.exists(env["PIPELINE_SECRETS_DIR"])
    providers = make_secret_providers(load_settings(env))
    assert not [p for p in providers if isinstance(p, OwnerOnlySecretInAFile)]
