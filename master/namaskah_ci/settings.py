"""Typed pipeline settings: defaults file, PIPELINE_CONFIG overlay, environment overrides.

The schema is the dataclasses below; `master/pipeline.toml` gives every default.
A file named by ``PIPELINE_CONFIG`` overrides any subset of keys and
``PIPELINE_<SECTION>_<KEY>`` environment variables override single keys
(``[deploy.staging] url`` is ``PIPELINE_DEPLOY_STAGING_URL``). Every problem is
raised as one ``SettingsError`` line naming the key and what is wrong with it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import tomllib
import typing
from pathlib import Path
from typing import Any, Mapping

ROOT = Path(__file__).resolve().parents[2]
DEFAULTS_FILE = ROOT / "master" / "pipeline.toml"
ENV_PREFIX = "PIPELINE_"
CONFIG_ENV = "PIPELINE_CONFIG"


class SettingsError(Exception):
    """A settings problem, its message a single line naming the key."""


@dataclasses.dataclass(frozen=True)
class MasterSection:
    basedir: str
    title: str
    buildbot_url: str
    db_url: str


@dataclasses.dataclass(frozen=True)
class WwwSection:
    port: int
    bind: str
    public_view: bool
    admins: list[str]
    admin_groups: list[str]


@dataclasses.dataclass(frozen=True)
class WorkersSection:
    mode: str
    port: int
    bind: str
    interpreters: dict[str, str]
    cache_dir: str
    # docker mode (docs/docker.md)
    docker_host: str
    extra_docker_hosts: list[str]
    network_mode: str
    master_host: str
    images: dict[str, str]
    service_ready_timeout: int
    instance_name: str
    app_base_image: str


@dataclasses.dataclass(frozen=True)
class RepoSection:
    url: str
    branches: list[str]
    all_branches: bool
    poll_interval: int
    tree_stable_seconds: int


@dataclasses.dataclass(frozen=True)
class SecretsSection:
    dir: str
    env_prefix: str


@dataclasses.dataclass(frozen=True)
class ChecksSection:
    required: list[str]
    disabled: list[str]
    coverage_min: int
    report_retention_days: int


@dataclasses.dataclass(frozen=True)
class RenderSection:
    api_url: str
    request_timeout_seconds: int  # per HTTP request to Render, the hooks and the deployed service


@dataclasses.dataclass(frozen=True)
class DeploySection:
    branch: str
    url: str
    wait_seconds: int
    health_retries: int
    health_interval_seconds: int
    smoke_paths: list[str]
    live_timeout_seconds: int  # how long a deploy may take to go live (Render API polling)
    poll_interval_seconds: int  # between two Render API status polls


@dataclasses.dataclass(frozen=True)
class GithubSection:
    api_url: str
    repository: str


@dataclasses.dataclass(frozen=True)
class NotifySection:
    email_to: list[str]
    email_from: str
    smtp_host: str
    smtp_port: int


SECTIONS: dict[str, type] = {
    "master": MasterSection,
    "www": WwwSection,
    "workers": WorkersSection,
    "repo": RepoSection,
    "secrets": SecretsSection,
    "checks": ChecksSection,
    "render": RenderSection,
    "deploy.production": DeploySection,
    "deploy.staging": DeploySection,
    "notify": NotifySection,
    "github": GithubSection,
}
WORKER_MODES = ("local", "docker")
NETWORK_MODES = ("host", "per-build")


@dataclasses.dataclass(frozen=True)
class Settings:
    """All settings; paths are resolved against the repository root."""

    master: MasterSection
    www: WwwSection
    workers: WorkersSection
    repo: RepoSection
    secrets: SecretsSection
    checks: ChecksSection
    render: RenderSection
    deploy: dict[str, DeploySection]
    notify: NotifySection
    github: GithubSection

    @property
    def basedir(self) -> Path:
        return resolve_path(self.master.basedir)

    @property
    def secrets_dir(self) -> Path:
        return resolve_path(self.secrets.dir)

    @property
    def cache_dir(self) -> Path:
        return resolve_path(self.workers.cache_dir) if self.workers.cache_dir else self.basedir / "cache"

    @property
    def repo_url(self) -> str:
        return self.repo.url or str(ROOT)

    @property
    def database_url(self) -> str:
        return self.master.db_url or f"sqlite:///{self.basedir / 'state.sqlite'}"

    @property
    def buildbot_url(self) -> str:
        url = self.master.buildbot_url or f"http://localhost:{self.www.port}/"
        return url if url.endswith("/") else url + "/"


def resolve_path(value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else ROOT / path


def _field_types(section: str) -> dict[str, Any]:
    return typing.get_type_hints(SECTIONS[section])


def _flatten(data: Mapping[str, Any], source: str) -> dict[str, dict[str, Any]]:
    """Turn TOML tables into {"section": {key: value}}, dotted names for nested tables."""
    out: dict[str, dict[str, Any]] = {}
    for name, table in data.items():
        if not isinstance(table, dict):
            raise SettingsError(f"{source}: '{name}' must be a [section], got a plain value")
        nested = {k: v for k, v in table.items() if isinstance(v, dict) and f"{name}.{k}" in SECTIONS}
        if nested:
            for sub, subtable in nested.items():
                out[f"{name}.{sub}"] = subtable
            table = {k: v for k, v in table.items() if k not in nested}
            if not table:
                continue
        if name not in SECTIONS:
            # [deploy.qa] arrives as {"deploy": {"qa": {...}}}: name the table the user wrote
            subtables = [f"{name}.{k}" for k, v in table.items() if isinstance(v, dict)]
            shown = ", ".join(subtables) if subtables and len(subtables) == len(table) else name
            raise SettingsError(f"{source}: unknown section [{shown}] (known: {', '.join(SECTIONS)})")
        out[name] = table
    return out


def _check_type(section: str, key: str, value: Any, source: str) -> Any:
    expected = _field_types(section)[key]
    where = f"{source}: [{section}] {key}"
    origin = typing.get_origin(expected)
    if expected is bool:
        if not isinstance(value, bool):
            raise SettingsError(f"{where}: expected true or false, got {value!r}")
    elif expected is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SettingsError(f"{where}: expected an integer, got {value!r}")
        if value < 0:
            raise SettingsError(f"{where}: must not be negative, got {value}")
    elif expected is str:
        if not isinstance(value, str):
            raise SettingsError(f"{where}: expected a string, got {value!r}")
    elif origin is list:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise SettingsError(f"{where}: expected a list of strings, got {value!r}")
    elif origin is dict:
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise SettingsError(f"{where}: expected a table of strings, got {value!r}")
    return value


def _merge(base: dict[str, dict[str, Any]], overlay: dict[str, dict[str, Any]], source: str) -> None:
    for section, table in overlay.items():
        known = _field_types(section)
        for key, value in table.items():
            if key not in known:
                raise SettingsError(f"{source}: unknown key '{key}' in [{section}] (known: {', '.join(known)})")
            base.setdefault(section, {})[key] = _check_type(section, key, value, source)


def _read_toml(path: Path) -> dict[str, dict[str, Any]]:
    try:
        with path.open("rb") as handle:
            return _flatten(tomllib.load(handle), str(path))
    except FileNotFoundError:
        raise SettingsError(f"{path}: settings file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise SettingsError(f"{path}: cannot read: {exc.strerror}") from None


def env_name(section: str, key: str) -> str:
    return ENV_PREFIX + section.upper().replace(".", "_") + "_" + key.upper()


def _parse_env(section: str, key: str, raw: str, var: str) -> Any:
    expected = _field_types(section)[key]
    origin = typing.get_origin(expected)
    text = raw.strip()
    if expected is bool:
        lowered = text.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise SettingsError(f"{var}: expected true or false, got {raw!r}")
    if expected is int:
        try:
            return int(text)
        except ValueError:
            raise SettingsError(f"{var}: expected an integer, got {raw!r}") from None
    if origin in (list, dict) and text[:1] in ("[", "{"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise SettingsError(f"{var}: not valid JSON: {exc}") from None
    if origin is list:
        return [part.strip() for part in text.split(",") if part.strip()]
    if origin is dict:
        pairs = [part.split("=", 1) for part in text.split(",") if part.strip()]
        if any(len(pair) != 2 for pair in pairs):
            raise SettingsError(f"{var}: expected key=value pairs separated by commas, got {raw!r}")
        return {k.strip(): v.strip() for k, v in pairs}
    return raw


def _env_overrides(environ: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    names = {env_name(s, k): (s, k) for s in SECTIONS for k in _field_types(s)}
    out: dict[str, dict[str, Any]] = {}
    for var, raw in environ.items():
        if not var.startswith(ENV_PREFIX) or var == CONFIG_ENV:
            continue
        if var not in names:
            raise SettingsError(f"{var}: unknown setting (expected PIPELINE_<SECTION>_<KEY>, e.g. PIPELINE_WWW_PORT)")
        section, key = names[var]
        value = _parse_env(section, key, raw, var)
        out.setdefault(section, {})[key] = _check_type(section, key, value, var)
    return out


def _validate(merged: dict[str, dict[str, Any]]) -> None:
    for section in SECTIONS:
        missing = [k for k in _field_types(section) if k not in merged.get(section, {})]
        if missing:
            raise SettingsError(f"{DEFAULTS_FILE}: [{section}] lacks {', '.join(missing)}")
    mode = merged["workers"]["mode"]
    if mode not in WORKER_MODES:
        raise SettingsError(f"[workers] mode: must be one of {', '.join(WORKER_MODES)}, got {mode!r}")
    network_mode = merged["workers"]["network_mode"]
    if network_mode not in NETWORK_MODES:
        raise SettingsError(
            f"[workers] network_mode: must be one of {', '.join(NETWORK_MODES)}, got {network_mode!r}"
        )
    if merged["workers"]["service_ready_timeout"] < 1:
        raise SettingsError("[workers] service_ready_timeout: must be at least 1 second")
    for section, key in (("www", "port"), ("workers", "port"), ("notify", "smtp_port")):
        port = merged[section][key]
        if not 1 <= port <= 65535:
            raise SettingsError(f"[{section}] {key}: must be a TCP port (1-65535), got {port}")
    if merged["www"]["port"] == merged["workers"]["port"]:
        raise SettingsError("[workers] port: must differ from [www] port")
    for section in ("deploy.production", "deploy.staging"):
        table = merged[section]
        if table["health_retries"] < 1:
            raise SettingsError(f"[{section}] health_retries: must be at least 1")
        for key in ("poll_interval_seconds", "live_timeout_seconds"):
            if table[key] < 1:
                raise SettingsError(f"[{section}] {key}: must be at least 1")
        for path in table["smoke_paths"]:
            if not path.startswith("/"):
                raise SettingsError(f"[{section}] smoke_paths: {path!r} must start with '/'")
    if merged["checks"]["coverage_min"] > 100:
        raise SettingsError("[checks] coverage_min: must be a percentage (0-100)")
    if not merged["repo"]["branches"]:
        raise SettingsError("[repo] branches: must name at least one branch")
    repository = merged["github"]["repository"]
    if repository and (repository.count("/") != 1 or not all(repository.split("/"))):
        raise SettingsError(f"[github] repository: expected owner/name, got {repository!r}")


def load_settings(environ: Mapping[str, str] | None = None, defaults: Path = DEFAULTS_FILE) -> Settings:
    """Read defaults, the PIPELINE_CONFIG overlay and environment overrides."""
    environ = os.environ if environ is None else environ
    merged: dict[str, dict[str, Any]] = {}
    _merge(merged, _read_toml(defaults), str(defaults))
    overlay_path = environ.get(CONFIG_ENV, "").strip()
    if overlay_path:
        overlay = Path(overlay_path).expanduser()
        _merge(merged, _read_toml(overlay), str(overlay))
    _merge(merged, _env_overrides(environ), "environment")
    _validate(merged)
    built = {name: SECTIONS[name](**merged[name]) for name in SECTIONS}
    deploy = {"production": built.pop("deploy.production"), "staging": built.pop("deploy.staging")}
    return Settings(deploy=deploy, **built)


def main(argv: list[str]) -> int:
    """`python -m namaskah_ci.settings [KEY]`: validate, or print one value (used by the Makefile)."""
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"settings error: {exc}", file=sys.stderr)
        return 2
    if argv:
        value: Any = settings
        for part in argv[0].split("."):
            value = getattr(value, part)
        print(value)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
