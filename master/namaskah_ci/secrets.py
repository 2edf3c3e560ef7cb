"""Secret providers: one file per secret in `[secrets] dir`, readable by its owner only.

Buildbot's stock `SecretInAFile` only refuses files readable by others; this
one also refuses group-readable files, with a message naming the file and the
`chmod` that fixes it. Secrets reach steps only through `util.Secret` /
`%(secret:...)s`, which Buildbot redacts from logs.
"""

from __future__ import annotations

import os
import stat

from buildbot import config
from buildbot.secrets.providers.file import SecretInAFile

from namaskah_ci.settings import Settings

SECRET_NAMES = (
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


class OwnerOnlySecretInAFile(SecretInAFile):
    """SecretInAFile that also refuses group-readable secret files."""

    def checkFileIsReadOnly(self, dirname, secretfile):
        path = os.path.join(dirname, secretfile)
        mode = stat.S_IMODE(os.stat(path).st_mode)
        if mode & 0o077:
            config.error(
                f"secret file {path} has mode {oct(mode)}: it must be readable by its owner only "
                f"(run: chmod 600 {path})"
            )


def make_secret_providers(settings: Settings) -> list:
    """Providers for `c['secretsProviders']`; an absent directory means no secrets."""
    directory = settings.secrets_dir
    if not directory.is_dir():
        return []
    return [OwnerOnlySecretInAFile(dirname=str(directory))]
