"""`build_config(settings)`: builder names, scheduler wiring, force buttons, required/disabled checks,
fresh objects on every call, and no secret value anywhere in the config."""

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

from namaskah_ci import workers
from namaskah_ci.config import ConfigError, build_config
from namaskah_ci.jobs import check_job_names, make_jobs
from namaskah_ci.secrets import SECRET_NAMES, OwnerOnlySecretInAFile, make_secret_providers
from namaskah_ci.settings import load_settings
from namaskah_ci.steps.fanout import FanOut

CHECKS = ["test-py3.9", "test-py3.11", "lint", "integration", "migration-test", "security", "container-scan",
          "secrets-scan"]
PRESENT = ["pipeline", *CHECKS, "codeql"]
# DESIGN.md's full list: the deploy and rollback builders come with the deploy work
DESIGN_BUILDERS = {*PRESENT, "deploy-production", "deploy-staging", "rollback-production", "rollback-staging"}


def isolated_env(tmp: Path) -> dict[str, str]:
    """Settings that touch nothing outside `tmp` (no secrets directory yet); the master's own
    interpreter for every Python version, so finding interpreters stays fast."""
    return {
        "PIPELINE_MASTER_BASEDIR": str(tmp / "master"),
        "PIPELINE_SECRETS_DIR": str(tmp / "secrets"),
        "PIPELINE_WORKERS_INTERPRETERS": f"3.9={sys.executable},3.11={sys.executable}",
    }


@pytest.fixture(autouse=True, scope="module")
def fast_interpreter_probe():
    """build_config probes each job's interpreter with a subprocess; these tests only need a name."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(workers, "_usable", lambda candidate: True, raising=False)
        yield


@pytest.fixture
def env(tmp_path) -> dict[str, str]:
    return isolated_env(tmp_path)


@pytest.fixture(scope="module")
def default_config(tmp_path_factory) -> dict:
    """One config with default settings, shared by the tests that only read it."""
    return build_config(load_settings(isolated_env(tmp_path_factory.mktemp("config"))))


def config_for(env: dict[str, str], **extra: str) -> dict:
    return build_config(load_settings({**env, **extra}))


def by_name(items) -> dict:
    return {item.name: item for item in items}


def steps_of(builder) -> list:
    return [factory.buildStep() for factory in builder.factory.steps]


def fanout_of(config: dict) -> FanOut:
    (fanout,) = [s for s in steps_of(by_name(config["builders"])["pipeline"]) if isinstance(s, FanOut)]
    return fanout


def fanned_out_builders(config: dict) -> list[str]:
    schedulers = by_name(config["schedulers"])
    names = []
    for scheduler_name in fanout_of(config).schedulerNames:
        scheduler = schedulers[scheduler_name]
        assert isinstance(scheduler, Triggerable), scheduler_name
        names += scheduler.builderNames
    return names


# --- builders and schedulers ----------------------------------------------------------------------


def test_builder_names_are_the_design_names(default_config):
    names = [b.name for b in default_config["builders"]]
    assert len(names) == len(set(names))
    assert set(PRESENT) <= set(names)
    assert set(names) <= DESIGN_BUILDERS, set(names) - DESIGN_BUILDERS


def test_every_builder_has_a_worker_that_exists(default_config):
    config = default_config
    workers = {w.name for w in config["workers"]}
    for builder in config["builders"]:
        assert builder.workernames and set(builder.workernames) <= workers, builder.name


def test_each_check_has_a_triggerable_and_a_force_scheduler(default_config):
    schedulers = default_config["schedulers"]
    for check in CHECKS:
        triggerables = [s for s in schedulers if isinstance(s, Triggerable) and check in s.builderNames]
        forces = [s for s in schedulers if isinstance(s, ForceScheduler) and check in s.builderNames]
        assert len(triggerables) == 1 and triggerables[0].builderNames == [check], check
        assert len(forces) == 1, check
    forced = {b for s in schedulers if isinstance(s, ForceScheduler) for b in s.builderNames}
    assert {"pipeline", "codeql"} <= forced


def test_force_schedulers_ask_for_branch_and_revision(default_config):
    for scheduler in default_config["schedulers"]:
        if isinstance(scheduler, ForceScheduler) and set(scheduler.builderNames) <= set(PRESENT):
            (codebase,) = scheduler._config_kwargs["codebases"]
            fields = {f.name: f for f in codebase.fields}
            assert fields["branch"].default == "main" and fields["revision"].default == "", scheduler.name


def test_pushes_go_to_the_pipeline_only(default_config):
    schedulers = default_config["schedulers"]
    (push,) = [s for s in schedulers if isinstance(s, AnyBranchScheduler) and not isinstance(s, SingleBranchScheduler)]
    assert push.builderNames == ["pipeline"]
    triggered = {s.name: s.builderNames for s in schedulers if isinstance(s, Triggerable)}
    assert all("pipeline" not in names for names in triggered.values())
    # codeql is started by the pipeline once its checks ended (test_codeql_runs_saturday_evening_and_on_main)
    assert [name for name, names in triggered.items() if "codeql" in names] == ["analysis-codeql"]


def test_pipeline_fans_out_to_every_check(default_config):
    config = default_config
    assert fanned_out_builders(config) == CHECKS == check_job_names(make_jobs())
    fanout = fanout_of(config)
    assert fanout.waitForFinish and fanout.updateSourceStamp is False


def test_disabled_checks_are_not_fanned_out_but_can_still_be_forced(env):
    config = config_for(env, PIPELINE_CHECKS_DISABLED="lint,security", PIPELINE_CHECKS_REQUIRED="test-py3.11")
    assert fanned_out_builders(config) == [c for c in CHECKS if c not in ("lint", "security")]
    forced = {b for s in config["schedulers"] if isinstance(s, ForceScheduler) for b in s.builderNames}
    assert {"lint", "security"} <= forced
    assert {"lint", "security"} <= {b.name for b in config["builders"]}


def test_codeql_runs_saturday_evening_and_on_main(default_config):
    schedulers = [s for s in default_config["schedulers"] if "codeql" in s.builderNames]
    (nightly,) = [s for s in schedulers if isinstance(s, Nightly)]
    assert nightly.builderNames == ["codeql"]
    kwargs = nightly._config_kwargs
    assert (kwargs["dayOfWeek"], kwargs["hour"], kwargs["minute"]) == (5, 19, 35)  # Monday=0: Saturday
    assert kwargs["branch"] == "main"
    # on main, the pipeline triggers it after its checks (not beside them) and does not wait for it
    (on_main,) = [s for s in schedulers if isinstance(s, Triggerable)]
    pipeline = by_name(default_config["builders"])["pipeline"]
    steps = [f.buildStep() for f in pipeline.factory.steps]
    names = [s.name for s in steps]
    assert names.index("checks") < names.index("analysis")
    (analysis,) = [s for s in steps if s.name == "analysis"]
    assert analysis.schedulerNames == [on_main.name] and analysis.waitForFinish is False
    assert analysis.alwaysRun is True  # a failed check does not stop static analysis

    def step_on(branch):
        return types.SimpleNamespace(build=types.SimpleNamespace(getProperty={"branch": branch}.get))

    assert analysis.doStepIf(step_on("main")) is True
    assert analysis.doStepIf(step_on("develop")) is False
    assert analysis.doStepIf(step_on(None)) is False


def test_check_builders_never_collapse_requests(default_config):
    builders = by_name(default_config["builders"])
    for name in [*CHECKS, "codeql"]:
        assert builders[name].collapseRequests is False, name


def test_coverage_min_reaches_the_test_commands(env):
    builders = by_name(config_for(env, PIPELINE_CHECKS_COVERAGE_MIN="61")["builders"])
    for name in ("test-py3.9", "test-py3.11"):
        (pytest_step,) = [s for s in steps_of(builders[name]) if s.name == "pytest"]
        assert "--cov-fail-under=61" in pytest_step.command


def test_core_settings_reach_the_config(env):
    config = config_for(env, PIPELINE_WWW_PORT="8123", PIPELINE_WORKERS_PORT="9123")
    assert config["buildbotNetUsageData"] is None
    assert config["buildbotURL"] == "http://localhost:8123/"
    assert config["www"]["port"] == "tcp:8123:interface=127.0.0.1"
    assert config["protocols"]["pb"]["port"] == "tcp:9123:interface=127.0.0.1"
    assert config["db"]["db_url"] == f"sqlite:///{env['PIPELINE_MASTER_BASEDIR']}/state.sqlite"


def test_a_fresh_config_on_every_call(env):
    settings = load_settings(env)
    first, second = build_config(settings), build_config(settings)
    assert first is not second
    for key in ("builders", "schedulers", "workers", "change_source", "services", "www"):
        assert first[key] is not second[key], key
    for a, b in zip(first["builders"], second["builders"]):
        assert a is not b and a.factory is not b.factory and a.factory.steps is not b.factory.steps
    first["builders"].clear()
    first["schedulers"].pop()
    third = build_config(settings)
    assert [b.name for b in third["builders"]] == [b.name for b in second["builders"]]
    assert len(third["schedulers"]) == len(second["schedulers"])


@pytest.mark.parametrize("key", ["required", "disabled"])
def test_unknown_check_name_is_a_config_error_naming_it(env, key):
    with pytest.raises(ConfigError) as info:
        config_for(env, **{f"PIPELINE_CHECKS_{key.upper()}": "lint,tests-py3.9"})
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"[checks] {key}: 'tests-py3.9' is not a check builder (known: ")
    assert "test-py3.9" in message


def test_codeql_is_not_a_check_for_required_or_disabled(env):
    with pytest.raises(ConfigError, match="'codeql' is not a check builder"):
        config_for(env, PIPELINE_CHECKS_REQUIRED="codeql")


# --- secrets --------------------------------------------------------------------------------------


# a bcrypt htpasswd line (`htpasswd -B`), as the admin_htpasswd secret must be
HTPASSWD = "admin:" + bcrypt.hashpw(b"S3CRET-password", bcrypt.gensalt(rounds=4)).decode()


# DESIGN.md's secrets (other optional ones, such as GitHub login, switch features on and need more settings)
DESIGN_SECRETS = ("render_deploy_hook", "render_rollback_hook", "staging_deploy_hook", "staging_rollback_hook",
                  "render_api_key", "render_service_id", "codecov_token", "github_token", "safety_api_key",
                  "webhook_secret", "notify_webhook_url", "admin_htpasswd")


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
    assert any("--cov-fail-under=40" in s for s in found)
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
    assert info.value.errors == [f"secret file {path} has mode {oct(mode)}: it must be readable by its owner only "
                                 f"(run: chmod 600 {path})"]
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
