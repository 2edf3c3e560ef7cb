"""Secret providers: one file per secret in `[secrets] dir`, and environment variables.

Buildbot's stock `SecretInAFile` only refuses files readable by others; this
one refuses any secret file that group or others may read or write, a secret
directory that group or others may write, and an `admin_htpasswd` that is not
in bcrypt form. The master does not start until they are fixed, and each
message names the file and the command that fixes it.

`SecretInEnvironment` serves `NAMASKAH_SECRET_GITHUB_TOKEN` as the secret
`github_token` (prefix: `[secrets] env_prefix`), so a container can take its
secrets from its environment. When the master starts it removes those
variables from its own environment: local workers start their commands with
the master's environment (and log it), so the values must not stay there.

Secrets reach steps only through `util.Secret` / `%(secret:...)s`, which
Buildbot redacts from logs. Worker passwords are secrets too:
`worker_password()` is the hook the docker worker module uses.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from typing import Any

from buildbot import config
from buildbot.plugins import util
from buildbot.secrets.providers.base import SecretProviderBase
from buildbot.secrets.providers.file import SecretInAFile

from namaskah_ci import names
from namaskah_ci.access.auth import htpasswd_problems
from namaskah_ci.names import (
    ADMIN_HTPASSWD,
    GITHUB_OAUTH_CLIENT_ID,
    GITHUB_OAUTH_CLIENT_SECRET,
    WORKER_PASSWORD,
)
from namaskah_ci.settings import Settings

# DESIGN.md's secret names (the seed's two environments; any other `<env>` adds its own three)
SECRET_NAMES = (
    *names.SEED_ENVIRONMENT_SECRETS["production"][:2],
    *names.SEED_ENVIRONMENT_SECRETS["staging"][:2],
    names.RENDER_API_KEY,
    names.SEED_ENVIRONMENT_SECRETS["production"][2],
    names.CODECOV_TOKEN,
    names.GITHUB_TOKEN,
    names.SAFETY_API_KEY,
    names.WEBHOOK_SECRET,
    names.NOTIFY_WEBHOOK_URL,
    ADMIN_HTPASSWD,
)
# switch features on when present: GitHub login (both), docker-mode worker logins
OPTIONAL_SECRET_NAMES = (GITHUB_OAUTH_CLIENT_ID, GITHUB_OAUTH_CLIENT_SECRET, WORKER_PASSWORD)

# values taken out of os.environ by SecretInEnvironment, kept for reconfigs: {env var: value}
_CAPTURED_ENV: dict[str, str] = {}


def _is_secret_entry(dirname: str, name: str) -> bool:
    """Regular files not starting with a dot (`.gitkeep`, editor files and directories are ignored)."""
    return not name.startswith(".") and os.path.isfile(os.path.join(dirname, name))


def secret_file_problems(dirname: str) -> list[str]:
    """Why the secret directory must not be used; empty when it is fine."""
    problems = []
    dir_mode = stat.S_IMODE(os.stat(dirname).st_mode)
    if dir_mode & 0o022:
        problems.append(
            f"secret directory {dirname} has mode {oct(dir_mode)}: group and others must not write to it "
            f"(run: chmod 700 {dirname})"
        )
    for name in sorted(os.listdir(dirname)):
        if not _is_secret_entry(dirname, name):
            continue
        path = os.path.join(dirname, name)
        mode = stat.S_IMODE(os.stat(path).st_mode)
        if mode & 0o077:
            problems.append(
                f"secret file {path} has mode {oct(mode)}: it must be readable by its owner only "
                f"(run: chmod 600 {path})"
            )
        elif name == ADMIN_HTPASSWD:
            with open(path, encoding="utf-8", errors="replace") as handle:
                problems += [f"secret file {path}: {p}" for p in htpasswd_problems(handle.read())]
    return problems


class OwnerOnlySecretInAFile(SecretInAFile):
    """SecretInAFile that refuses group/other-accessible files and a non-bcrypt admin_htpasswd."""

    name = "OwnerOnlySecretInAFile"

    def checkSecretDirectoryIsAvailableAndReadable(self, dirname: str, suffixes: list[str]) -> None:
        if not os.path.isdir(dirname):
            config.error(f"secret directory {dirname} does not exist")
            return
        for problem in secret_file_problems(dirname):
            config.error(problem)

    def loadSecrets(self, dirname: str, suffixes: list[str], strip: bool) -> dict[str, str]:
        secrets = {}
        for name in os.listdir(dirname):
            if not _is_secret_entry(dirname, name):
                continue
            with open(os.path.join(dirname, name), encoding="utf-8") as source:
                value = source.read()
            secrets[name] = value.rstrip("\r\n") if strip else value
        return secrets


def env_var_name(prefix: str, secret: str) -> str:
    return prefix + secret.upper()


def environment_secrets(prefix: str, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """{secret name: value} from `environ` (default: os.environ) plus what was already taken out of it."""
    environ = os.environ if environ is None else environ
    found = {var: value for var, value in _CAPTURED_ENV.items() if var.startswith(prefix)}
    found.update({var: value for var, value in environ.items() if var.startswith(prefix)})
    return {var[len(prefix) :].lower(): value for var, value in found.items() if var[len(prefix) :]}


class SecretInEnvironment(SecretProviderBase):
    """Secrets from `<prefix><NAME>` environment variables, removed from the master's environment on start."""

    name = "SecretInEnvironment"

    def checkConfig(self, prefix: str, scrub: bool = True) -> None:
        if not prefix:
            config.error("SecretInEnvironment: the prefix must not be empty")
        htpasswd = environment_secrets(prefix).get(ADMIN_HTPASSWD)
        if htpasswd is not None:
            for problem in htpasswd_problems(htpasswd):
                config.error(f"environment variable {env_var_name(prefix, ADMIN_HTPASSWD)}: {problem}")

    def reconfigService(self, prefix: str, scrub: bool = True) -> None:
        self.secrets: dict[str, str] = {}
        for var in [v for v in os.environ if v.startswith(prefix)]:
            _CAPTURED_ENV[var] = os.environ[var]
            if scrub:
                del os.environ[var]
        self.secrets = {k: v.rstrip("\r\n") for k, v in environment_secrets(prefix).items()}

    def get(self, entry: str) -> str | None:
        return self.secrets.get(entry)


def secret_available(settings: Settings, name: str, environ: Mapping[str, str] | None = None) -> bool:
    """Whether a provider will serve `name`: used at config time to switch optional features on."""
    path = settings.secrets_dir / name
    try:
        if path.is_file() and path.read_text(encoding="utf-8", errors="replace").strip():
            return True
    except OSError:
        pass
    prefix = settings.secrets.env_prefix
    return bool(prefix) and bool(environment_secrets(prefix, environ).get(name, "").strip())


def worker_password() -> util.Secret:
    """The password docker-mode workers log in with (the `worker_password` secret)."""
    return util.Secret(WORKER_PASSWORD)


def make_secret_providers(settings: Settings) -> list[Any]:
    """Providers for `c['secretsProviders']`: the directory (when it exists) first, then the environment."""
    providers: list[Any] = []
    directory = settings.secrets_dir
    if directory.is_dir():
        providers.append(OwnerOnlySecretInAFile(dirname=str(directory)))
    if settings.secrets.env_prefix:
        providers.append(SecretInEnvironment(prefix=settings.secrets.env_prefix))
    return providers
