"""Value checks of the merged settings (settings.py reads and merges them; this says what is allowed).

Each problem is one `SettingsError` line naming the key, what is wrong and what is allowed.
"""

from __future__ import annotations

import re
from typing import Any

DEPLOY_PREFIX = "deploy."
WORKER_MODES = ("local", "docker")
NETWORK_MODES = ("host", "per-build")


class SettingsError(Exception):
    """A settings problem, its message a single line naming the key."""


def deploy_sections(merged: dict[str, dict[str, Any]]) -> list[str]:
    return sorted(name for name in merged if name.startswith(DEPLOY_PREFIX))


def check_values(merged: dict[str, dict[str, Any]]) -> None:
    """Raise SettingsError for the first value out of range (every key is present by now)."""
    _check_workers(merged)
    _check_deploy(merged)
    if merged["checks"]["coverage_min"] > 100:
        raise SettingsError("[checks] coverage_min: must be a percentage (0-100)")
    if not merged["repo"]["branches"]:
        raise SettingsError("[repo] branches: must name at least one branch")
    if not merged["repo"]["default_branch"]:
        raise SettingsError("[repo] default_branch: must name a branch")
    _check_pipeline(merged)
    for key, value in merged["limits"].items():
        if value <= 0:
            raise SettingsError(f"[limits] {key}: must be more than 0, got {value}")
    repository = merged["github"]["repository"]
    if repository and (repository.count("/") != 1 or not all(repository.split("/"))):
        raise SettingsError(f"[github] repository: expected owner/name, got {repository!r}")


def _check_workers(merged: dict[str, dict[str, Any]]) -> None:
    mode = merged["workers"]["mode"]
    if mode not in WORKER_MODES:
        raise SettingsError(f"[workers] mode: must be one of {', '.join(WORKER_MODES)}, got {mode!r}")
    network_mode = merged["workers"]["network_mode"]
    if network_mode not in NETWORK_MODES:
        raise SettingsError(f"[workers] network_mode: must be one of {', '.join(NETWORK_MODES)}, got {network_mode!r}")
    for section, key in (("workers", "max_jobs"), ("workers", "engine_jobs"), ("pipeline", "max_pipelines")):
        if merged[section][key] < 0:
            raise SettingsError(f"[{section}] {key}: must be 0 (automatic) or more, got {merged[section][key]}")
    if merged["workers"]["service_ready_timeout"] < 1:
        raise SettingsError("[workers] service_ready_timeout: must be at least 1 second")
    for section, key in (("www", "port"), ("workers", "port"), ("notify", "smtp_port")):
        port = merged[section][key]
        if not 1 <= port <= 65535:
            raise SettingsError(f"[{section}] {key}: must be a TCP port (1-65535), got {port}")
    if merged["www"]["port"] == merged["workers"]["port"]:
        raise SettingsError("[workers] port: must differ from [www] port")


def _check_deploy(merged: dict[str, dict[str, Any]]) -> None:
    branches: dict[str, str] = {}
    for section in deploy_sections(merged):
        table = merged[section]
        if table["branch"] and table["branch"] in branches:
            raise SettingsError(
                f"[{section}] branch: {table['branch']!r} already deploys to [{branches[table['branch']]}]"
            )
        branches[table["branch"]] = section
        if table["health_retries"] < 1:
            raise SettingsError(f"[{section}] health_retries: must be at least 1")
        for key in ("poll_interval_seconds", "live_timeout_seconds"):
            if table[key] < 1:
                raise SettingsError(f"[{section}] {key}: must be at least 1")
        for path in table["smoke_paths"]:
            if not path.startswith("/"):
                raise SettingsError(f"[{section}] smoke_paths: {path!r} must start with '/'")


def _check_pipeline(merged: dict[str, dict[str, Any]]) -> None:
    from namaskah_ci import names  # plain data, no Buildbot

    environments = tuple(name[len(DEPLOY_PREFIX) :] for name in deploy_sections(merged))
    for secret in merged["pipeline"]["job_secrets"]:
        if names.master_only_secret(secret, environments):
            raise SettingsError(
                f"[pipeline] job_secrets: {secret!r} is a deploy, Render, GitHub, webhook or login secret: "
                "it never reaches a job"
            )
    if merged["pipeline"]["max_file_bytes"] < 1024:
        raise SettingsError("[pipeline] max_file_bytes: must be at least 1024")
    for name in merged["workers"]["job_env"]:
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", name):
            raise SettingsError(f"[workers] job_env: {name!r} is not an environment variable name")
