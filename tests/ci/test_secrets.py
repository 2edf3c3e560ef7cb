"""Secret providers: file permissions refused with a message naming the fix, a non-bcrypt
admin_htpasswd refused, entries that are not secrets ignored, and environment secrets that
leave the master's environment when it starts."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from buildbot.config.errors import ConfigErrors
from buildbot.process.properties import Secret

from harness import ROOT
from namaskah_ci import secrets as secrets_module
from namaskah_ci.secrets import (
    OwnerOnlySecretInAFile,
    SecretInEnvironment,
    make_secret_providers,
    secret_available,
    worker_password,
)
from namaskah_ci.settings import load_settings
from www_support import htpasswd_text, write_secrets

PREFIX = "NAMASKAH_TEST_SECRET_"


@pytest.fixture(autouse=True)
def fresh_capture(monkeypatch):
    monkeypatch.setattr(secrets_module, "_CAPTURED_ENV", {})


@pytest.fixture
def directory(tmp_path):
    path = tmp_path / "secrets"
    write_secrets(path, {"github_token": "ghp_token_value", "admin_htpasswd": htpasswd_text({"admin": "pw"})})
    return path


def errors_of(directory) -> list[str]:
    with pytest.raises(ConfigErrors) as info:
        OwnerOnlySecretInAFile(dirname=str(directory))
    return info.value.errors


def test_owner_only_files_load(directory):
    provider = OwnerOnlySecretInAFile(dirname=str(directory))
    provider.reconfigService(dirname=str(directory))
    assert provider.get("github_token") == "ghp_token_value"
    assert provider.get("admin_htpasswd").startswith("admin:$2b$")


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o606, 0o620])
def test_files_group_or_others_can_touch_are_refused_naming_the_fix(directory, mode):
    path = directory / "github_token"
    path.chmod(mode)
    assert errors_of(directory) == [
        f"secret file {path} has mode {oct(mode)}: it must be readable by its owner only (run: chmod 600 {path})"
    ]


@pytest.mark.parametrize("mode", [0o770, 0o777, 0o757])
def test_a_directory_others_can_write_is_refused(directory, mode):
    directory.chmod(mode)
    try:
        assert errors_of(directory) == [
            f"secret directory {directory} has mode {oct(mode)}: group and others must not write to it "
            f"(run: chmod 700 {directory})"
        ]
    finally:
        directory.chmod(0o700)


def test_read_only_owner_files_and_a_listable_directory_are_fine(directory):
    (directory / "github_token").chmod(0o400)
    directory.chmod(0o755)
    OwnerOnlySecretInAFile(dirname=str(directory))


def test_dotfiles_and_directories_are_not_secrets(directory):
    (directory / ".gitkeep").write_text("")
    (directory / ".gitkeep").chmod(0o644)
    (directory / "old").mkdir(mode=0o755)
    provider = OwnerOnlySecretInAFile(dirname=str(directory))
    provider.reconfigService(dirname=str(directory))
    assert set(provider.secrets) == {"github_token", "admin_htpasswd"}


def test_a_missing_directory_is_named(tmp_path):
    assert errors_of(tmp_path / "nope") == [f"secret directory {tmp_path / 'nope'} does not exist"]


@pytest.mark.parametrize(
    "content", ["admin:plain-password", "admin:$apr1$abc$def", "admin:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=", "admin"]
)
def test_an_admin_htpasswd_that_is_not_bcrypt_is_refused_without_echoing_it(directory, content):
    write_secrets(directory, {"admin_htpasswd": content})
    [error] = errors_of(directory)
    assert error.startswith(f"secret file {directory / 'admin_htpasswd'}: line 1")
    hashed = content.partition(":")[2]
    assert not hashed or hashed not in error


def test_environment_secrets_are_served_and_leave_the_environment(monkeypatch):
    monkeypatch.setenv(PREFIX + "GITHUB_TOKEN", "ghp_from_env")
    monkeypatch.setenv(PREFIX + "WEBHOOK_SECRET", "whs_from_env\n")
    provider = SecretInEnvironment(prefix=PREFIX)
    provider.reconfigService(prefix=PREFIX)
    assert provider.get("github_token") == "ghp_from_env"
    assert provider.get("webhook_secret") == "whs_from_env"
    assert provider.get("codecov_token") is None
    assert not [var for var in os.environ if var.startswith(PREFIX)], "secrets stayed in the master's environment"
    # a reconfig (SIGHUP) still serves them
    again = SecretInEnvironment(prefix=PREFIX)
    again.reconfigService(prefix=PREFIX)
    assert again.get("github_token") == "ghp_from_env"


def test_a_plain_htpasswd_in_the_environment_is_refused(monkeypatch):
    monkeypatch.setenv(PREFIX + "ADMIN_HTPASSWD", "admin:hunter2")
    with pytest.raises(ConfigErrors) as info:
        SecretInEnvironment(prefix=PREFIX)
    assert info.value.errors[0].startswith(f"environment variable {PREFIX}ADMIN_HTPASSWD: line 1 (user 'admin')")
    assert "hunter2" not in info.value.errors[0]


def test_secret_available_looks_at_files_and_environment(tmp_path, directory):
    settings = load_settings(
        {
            "PIPELINE_SECRETS_DIR": str(directory),
            "PIPELINE_SECRETS_ENV_PREFIX": PREFIX,
            "PIPELINE_MASTER_BASEDIR": str(tmp_path / "master"),
        }
    )
    assert secret_available(settings, "github_token", environ={})
    assert not secret_available(settings, "webhook_secret", environ={})
    assert secret_available(settings, "webhook_secret", environ={PREFIX + "WEBHOOK_SECRET": "x"})
    write_secrets(directory, {"codecov_token": ""})
    assert not secret_available(settings, "codecov_token", environ={})


def test_providers_directory_first_then_environment(tmp_path, directory):
    settings = load_settings({"PIPELINE_SECRETS_DIR": str(directory), "PIPELINE_MASTER_BASEDIR": str(tmp_path)})
    assert [type(p) for p in make_secret_providers(settings)] == [OwnerOnlySecretInAFile, SecretInEnvironment]
    off = load_settings(
        {
            "PIPELINE_SECRETS_DIR": str(tmp_path / "absent"),
            "PIPELINE_SECRETS_ENV_PREFIX": "",
            "PIPELINE_MASTER_BASEDIR": str(tmp_path),
        }
    )
    assert make_secret_providers(off) == []


def test_worker_password_is_a_secret_reference():
    password = worker_password()
    assert isinstance(password, Secret) and password.secret_name == "worker_password"


@pytest.mark.e2e
def test_the_master_refuses_to_start_with_a_group_readable_secret(tmp_path):
    """`buildbot checkconfig` (what `make up` and a start run first) fails naming the file and the fix."""
    directory = tmp_path / "secrets"
    write_secrets(directory, {"webhook_secret": "whs-value-not-to-print"})
    (directory / "webhook_secret").chmod(0o640)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")}
    env.update(
        PIPELINE_SECRETS_DIR=str(directory),
        PIPELINE_MASTER_BASEDIR=str(tmp_path / "master"),
        PYTHONPATH=str(ROOT / "master"),
        TZ="UTC",
    )
    done = subprocess.run(
        [str(Path(sys.executable).parent / "buildbot"), "checkconfig", str(ROOT / "master")],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert f"secret file {directory / 'webhook_secret'} has mode 0o640" in output
    assert f"chmod 600 {directory / 'webhook_secret'}" in output
    assert "whs-value-not-to-print" not in output
