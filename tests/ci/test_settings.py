"""Settings: defaults, PIPELINE_CONFIG overlay, PIPELINE_<SECTION>_<KEY> overrides, one-line errors,
and the real `master/master.cfg` under `buildbot checkconfig` / `scripts/master_ctl.sh up`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from namaskah_ci import settings as settings_mod
from namaskah_ci import workdirs
from namaskah_ci.settings import env_name, load_settings
from namaskah_ci.settings_checks import SettingsError
from namaskah_ci.settings_sections import SECTIONS

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def overlay(tmp_path: Path, text: str, **env: str) -> dict[str, str]:
    """An environment naming a settings file with `text`."""
    return {"PIPELINE_CONFIG": str(write(tmp_path / "settings.toml", text)), **env}


def settings_error(environ: dict[str, str]) -> str:
    with pytest.raises(SettingsError) as info:
        load_settings(environ)
    message = str(info.value)
    assert message and "\n" not in message, f"not one line: {message!r}"
    return message


# --- defaults -------------------------------------------------------------------------------------


def test_defaults_load_with_the_documented_values():
    s = load_settings({})
    assert (s.www.port, s.workers.mode, s.workers.port) == (8010, "local", 9989)
    assert s.workers.interpreters == {"3.9": "python3.9", "3.11": "python3.11"}
    assert s.repo.url == "" and s.repo_url == str(ROOT)
    assert s.repo.branches == ["main", "develop"] and s.repo.poll_interval == 60
    assert s.render.api_url == "https://api.render.com/v1"
    assert s.checks.required == []  # the deploy gate requires the pipeline file's verdict jobs
    assert s.checks.disabled == [] and s.checks.report_retention_days == 30
    assert set(s.deploy) == {"production", "staging"}
    assert (s.deploy["production"].branch, s.deploy["staging"].branch) == ("main", "develop")
    for env in s.deploy.values():
        assert (env.wait_seconds, env.health_retries, env.health_interval_seconds) == (60, 5, 10)
        assert env.smoke_paths == ["/health", "/api/v1/health", "/api/diagnostics"]
    # relative paths are taken from the repository root
    assert s.basedir == workdirs.default_basedir(ROOT, {})  # outside the checkout (tests/ci/test_workdirs.py)
    assert s.secrets_dir == ROOT / ".state" / "secrets"
    assert s.buildbot_url == "http://localhost:8010/"
    assert s.database_url == f"sqlite:///{s.basedir / 'state.sqlite'}"


def test_the_process_environment_is_not_read_when_environ_is_given(monkeypatch):
    monkeypatch.setenv("PIPELINE_WWW_PORT", "8111")
    assert load_settings({}).www.port == 8010
    assert load_settings().www.port == 8111


# --- overlay file and environment overrides -------------------------------------------------------


def test_overlay_file_overrides_a_subset_of_keys(tmp_path):
    s = load_settings(
        overlay(
            tmp_path,
            '[www]\nport = 8020\n[master]\nbasedir = "/srv/ci"\nbuildbot_url = "https://ci.example"\n'
            '[deploy.staging]\nurl = "https://stage.example"\nsmoke_paths = ["/health"]\n',
        )
    )
    assert s.www.port == 8020 and s.www.bind == "127.0.0.1"  # untouched keys keep their defaults
    assert s.basedir == Path("/srv/ci") and s.buildbot_url == "https://ci.example/"
    assert s.deploy["staging"].url == "https://stage.example"
    assert s.deploy["staging"].smoke_paths == ["/health"]
    assert s.deploy["production"].url == "https://namaskah.app"


def test_overlay_path_may_use_tilde(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    write(tmp_path / "ci.toml", "[repo]\npoll_interval = 5\n")
    assert load_settings({"PIPELINE_CONFIG": "~/ci.toml"}).repo.poll_interval == 5


@pytest.mark.parametrize(
    "var, raw, get, expected",
    [
        ("PIPELINE_WWW_PORT", " 8030 ", lambda s: s.www.port, 8030),
        ("PIPELINE_WWW_PUBLIC_VIEW", "false", lambda s: s.www.public_view, False),
        ("PIPELINE_WWW_PUBLIC_VIEW", "On", lambda s: s.www.public_view, True),
        ("PIPELINE_REPO_BRANCHES", "main, release ,", lambda s: s.repo.branches, ["main", "release"]),
        ("PIPELINE_REPO_BRANCHES", '["a", "b"]', lambda s: s.repo.branches, ["a", "b"]),
        ("PIPELINE_CHECKS_DISABLED", "", lambda s: s.checks.disabled, []),
        (
            "PIPELINE_WORKERS_INTERPRETERS",
            "3.9=/opt/py39/bin/python3.9, 3.11=python3.11",
            lambda s: s.workers.interpreters,
            {"3.9": "/opt/py39/bin/python3.9", "3.11": "python3.11"},
        ),
        (
            "PIPELINE_WORKERS_INTERPRETERS",
            '{"3.12": "python3.12"}',
            lambda s: s.workers.interpreters,
            {"3.12": "python3.12"},
        ),
        ("PIPELINE_DEPLOY_STAGING_URL", "https://s.example", lambda s: s.deploy["staging"].url, "https://s.example"),
        ("PIPELINE_DEPLOY_STAGING_HEALTH_RETRIES", "9", lambda s: s.deploy["staging"].health_retries, 9),
        ("PIPELINE_DEPLOY_PRODUCTION_SMOKE_PATHS", "/a,/b", lambda s: s.deploy["production"].smoke_paths, ["/a", "/b"]),
        ("PIPELINE_RENDER_API_URL", "http://127.0.0.1:9/v1", lambda s: s.render.api_url, "http://127.0.0.1:9/v1"),
    ],
)
def test_environment_overrides_each_type(var, raw, get, expected):
    assert get(load_settings({var: raw})) == expected


def test_environment_beats_the_overlay_file(tmp_path):
    env = overlay(tmp_path, "[www]\nport = 8020\n[deploy.staging]\nwait_seconds = 5\n", PIPELINE_WWW_PORT="8040")
    s = load_settings(env)
    assert s.www.port == 8040 and s.deploy["staging"].wait_seconds == 5
    assert s.deploy["production"].wait_seconds == 60  # a nested override touches one environment only


def test_env_names_cover_every_key_and_do_not_collide():
    sections = [*SECTIONS, "deploy.production", "deploy.staging"]
    names = [env_name(section, key) for section in sections for key in settings_mod._field_types(section)]
    assert len(names) == len(set(names))
    assert "PIPELINE_DEPLOY_STAGING_SMOKE_PATHS" in names and "PIPELINE_WORKERS_CACHE_DIR" in names


# --- every error is one line naming the key and the problem ----------------------------------------


@pytest.mark.parametrize(
    "text, fragments",
    [
        ("[www]\nprot = 8020\n", ["unknown key 'prot'", "[www]"]),
        ("[wwww]\nport = 8020\n", ["unknown section [wwww]"]),
        ('[deploy.qa]\nurl = "https://qa.example"\n', ["[deploy.qa]: lacks branch", "needs a branch and a url"]),
        ('[deploy.QA]\nbranch = "qa"\n', ["[deploy.QA]", "lower-case letters"]),
        ('[deploy.qa]\nbranch = "main"\nurl = "https://qa"\n', ["[deploy.qa] branch: 'main' already deploys to"]),
        ("[pipeline]\njob_secrets = ['render_api_key']\n", ["[pipeline] job_secrets: 'render_api_key'"]),
        ("[pipeline]\njob_secrets = ['qa_deploy_hook']\n", ["'qa_deploy_hook' is a deploy"]),
        ("[workers]\njob_env = { 'BAD NAME' = 'x' }\n", ["[workers] job_env: 'BAD NAME'"]),
        ("title = 'x'\n", ["'title' must be a [section]"]),
        ('[www]\nport = "8010"\n', ["[www] port", "expected an integer", "'8010'"]),
        ('[www]\nport = """80\n10"""\n', ["[www] port", "expected an integer"]),
        ("[www]\nport = 80.5\n", ["[www] port", "expected an integer"]),
        ("[www]\nport = true\n", ["[www] port", "expected an integer"]),
        ('[www]\npublic_view = "yes"\n', ["[www] public_view", "expected true or false"]),
        ('[repo]\nbranches = "main"\n', ["[repo] branches", "expected a list of strings"]),
        ("[repo]\nbranches = [1, 2]\n", ["[repo] branches", "expected a list of strings"]),
        ('[workers]\ninterpreters = ["python3"]\n', ["[workers] interpreters", "expected a table of strings"]),
        ("[repo]\npoll_interval = -5\n", ["[repo] poll_interval", "must not be negative"]),
        ("[deploy.production]\nwait_seconds = '60'\n", ["[deploy.production] wait_seconds", "expected an integer"]),
        ("[deploy.production]\nextra = 1\n", ["unknown key 'extra'", "[deploy.production]"]),
        ("[www\nport = 1\n", ["not valid TOML"]),
        ("[www]\nport = \n", ["not valid TOML"]),
        ('[workers]\nmode = "kubernetes"\n', ["[workers] mode", "local, docker", "'kubernetes'"]),
        ("[www]\nport = 70000\n", ["[www] port", "1-65535", "70000"]),
        ("[workers]\nport = 0\n", ["[workers] port", "1-65535"]),
        ("[notify]\nsmtp_port = 65536\n", ["[notify] smtp_port", "1-65535"]),
        ("[workers]\nport = 8010\n", ["[workers] port", "must differ from [www] port"]),
        ("[deploy.staging]\nhealth_retries = 0\n", ["[deploy.staging] health_retries", "at least 1"]),
        ('[deploy.staging]\nsmoke_paths = ["health"]\n', ["[deploy.staging] smoke_paths", "'health'", "'/'"]),
        ("[checks]\ncoverage_min = 101\n", ["[checks] coverage_min", "0-100"]),
        ("[repo]\nbranches = []\n", ["[repo] branches", "at least one branch"]),
    ],
)
def test_bad_settings_file_gives_one_line(tmp_path, text, fragments):
    message = settings_error(overlay(tmp_path, text))
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


def test_file_errors_name_the_file(tmp_path):
    bad = write(tmp_path / "bad.toml", "[www]\nport = 'x'\n")
    assert settings_error({"PIPELINE_CONFIG": str(bad)}).startswith(f"{bad}: [www] port:")
    missing = tmp_path / "missing.toml"
    assert settings_error({"PIPELINE_CONFIG": str(missing)}) == f"{missing}: settings file not found"
    assert "cannot read" in settings_error({"PIPELINE_CONFIG": str(tmp_path)})


@pytest.mark.parametrize(
    "var, raw, fragments",
    [
        ("PIPELINE_WWW_PORT", "abc", ["PIPELINE_WWW_PORT", "expected an integer", "'abc'"]),
        ("PIPELINE_WWW_PORT", "80\n10", ["PIPELINE_WWW_PORT", "expected an integer"]),
        ("PIPELINE_WWW_PORT", "-1", ["PIPELINE_WWW_PORT", "must not be negative"]),
        ("PIPELINE_WWW_PORT", "99999", ["[www] port", "1-65535"]),
        ("PIPELINE_WWW_PUBLIC_VIEW", "maybe", ["PIPELINE_WWW_PUBLIC_VIEW", "expected true or false"]),
        ("PIPELINE_REPO_BRANCHES", "[main", ["PIPELINE_REPO_BRANCHES", "not valid JSON"]),
        ("PIPELINE_REPO_BRANCHES", "[1, 2]", ["PIPELINE_REPO_BRANCHES", "expected a list of strings"]),
        ("PIPELINE_WORKERS_INTERPRETERS", "3.9", ["PIPELINE_WORKERS_INTERPRETERS", "key=value"]),
        ("PIPELINE_WORKERS_INTERPRETERS", '{"3.9": 3}', ["PIPELINE_WORKERS_INTERPRETERS", "table of strings"]),
        ("PIPELINE_WORKERS_MODE", "kubernetes", ["[workers] mode", "'kubernetes'"]),
        ("PIPELINE_DEPLOY_STAGING_WAIT_SECONDS", "soon", ["PIPELINE_DEPLOY_STAGING_WAIT_SECONDS", "integer"]),
        ("PIPELINE_WWW_PROT", "1", ["PIPELINE_WWW_PROT", "unknown setting"]),
        ("PIPELINE_DEPLOY_QA_URL", "x", ["PIPELINE_DEPLOY_QA_URL", "unknown setting"]),
    ],
)
def test_bad_environment_variable_gives_one_line(var, raw, fragments):
    message = settings_error({var: raw})
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


def test_settings_module_cli_validates_and_prints_values(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")}
    env["PYTHONPATH"] = str(ROOT / "master")
    run = [sys.executable, "-m", "namaskah_ci.settings"]
    good = subprocess.run(
        [*run, "www.port"],
        env=dict(env, PIPELINE_WWW_PORT="8123"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (good.returncode, good.stdout.strip()) == (0, "8123")
    bad = subprocess.run(
        run, env=dict(env, PIPELINE_WWW_PORT="x"), capture_output=True, text=True, timeout=60, check=False
    )
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.splitlines() == ["settings error: PIPELINE_WWW_PORT: expected an integer, got 'x'"]


# --- the real master.cfg under buildbot checkconfig, and master_ctl.sh -----------------------------


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")}
    env.update(TZ="UTC", **extra)
    return env


@pytest.fixture(scope="module")
def master_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("checkconfig") / "master"
    subprocess.run(
        [str(VENV_BIN / "buildbot"), "create-master", "-r", f"--config={ROOT / 'master' / 'master.cfg'}", str(path)],
        check=True,
        capture_output=True,
        timeout=120,
        env=clean_env(),
    )
    return path


def checkconfig(master_dir: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(VENV_BIN / "buildbot"), "checkconfig", str(master_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        env=clean_env(**env),
        cwd=master_dir,
        check=False,
    )


def test_checkconfig_accepts_the_defaults(master_dir):
    done = checkconfig(master_dir)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Config file is good!" in done.stdout


@pytest.mark.parametrize(
    "text, expected",
    [
        ("[www]\nport = 'x'\n", "{file}: [www] port: expected an integer, got 'x'"),
        ("[pipeline]\nmax_file_bytes = 10\n", "[pipeline] max_file_bytes: must be at least 1024"),
    ],
)
def test_checkconfig_rejects_bad_settings_in_one_line(master_dir, tmp_path, text, expected):
    bad = write(tmp_path / "bad.toml", text)
    done = checkconfig(master_dir, PIPELINE_CONFIG=str(bad))
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert "Traceback" not in output and "Config file is good" not in output
    errors = [line.strip() for line in output.splitlines() if "settings error:" in line]
    assert len(errors) == 1 and errors[0].startswith(f"settings error: {expected.format(file=bad)}"), output


def test_checkconfig_rejects_group_readable_secret_files(master_dir, tmp_path):
    secrets = tmp_path / "secrets"
    secrets.mkdir(mode=0o700)
    write(secrets / "codecov_token", "tok\n").chmod(0o640)
    done = checkconfig(master_dir, PIPELINE_SECRETS_DIR=str(secrets))
    output = done.stdout + done.stderr
    assert done.returncode != 0 and "Traceback" not in output
    assert f"secret file {secrets / 'codecov_token'} has mode 0o640" in output


def test_master_ctl_up_stops_on_bad_settings_before_doing_anything(tmp_path):
    bad = write(tmp_path / "bad.toml", "[www]\nport = 'x'\n")
    secrets = tmp_path / "secrets-not-created"
    done = subprocess.run(
        [str(ROOT / "scripts" / "master_ctl.sh"), "up"],
        capture_output=True,
        text=True,
        timeout=120,
        env=clean_env(PIPELINE_CONFIG=str(bad), PIPELINE_SECRETS_DIR=str(secrets), PY=sys.executable),
        check=False,
    )
    assert done.returncode != 0
    assert done.stdout == ""
    assert done.stderr.splitlines() == [f"settings error: {bad}: [www] port: expected an integer, got 'x'"]
    assert not secrets.exists()
