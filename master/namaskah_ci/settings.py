"""Typed pipeline settings: defaults file, PIPELINE_CONFIG overlay, environment overrides.

The schema is `Settings` below over the sections of `settings_sections.py`; `master/pipeline.toml`
gives every default.
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
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from namaskah_ci import names, workdirs
from namaskah_ci.settings_checks import DEPLOY_PREFIX, SettingsError, check_values, deploy_sections
from namaskah_ci.settings_sections import (
    DEPLOY_DEFAULTS,
    ENVIRONMENT_NAME,
    SECTIONS,
    ChecksSection,
    DeploySection,
    GithubSection,
    LimitsSection,
    MasterSection,
    NotifySection,
    PipelineSection,
    RenderSection,
    RepoSection,
    ScannersSection,
    SecretsSection,
    WorkersSection,
    WwwSection,
)

ROOT = Path(__file__).resolve().parents[2]
DEFAULTS_FILE = ROOT / "master" / "pipeline.toml"
ENV_PREFIX = "PIPELINE_"
CONFIG_ENV = "PIPELINE_CONFIG"
DEFAULT_PIPELINE = ROOT / "master" / "default-pipeline.yml"


@dataclasses.dataclass(frozen=True)
class Settings:
    """All settings; paths are resolved against the repository root."""

    master: MasterSection
    www: WwwSection
    workers: WorkersSection
    repo: RepoSection
    secrets: SecretsSection
    pipeline: PipelineSection
    scanners: ScannersSection
    checks: ChecksSection
    render: RenderSection
    deploy: dict[str, DeploySection]  # environment name -> its section; a branch of "" switches it off
    notify: NotifySection
    github: GithubSection
    limits: LimitsSection

    @property
    def basedir(self) -> Path:
        return resolve_path(self.master.basedir)

    @property
    def reports_dir(self) -> Path:
        """Where the master keeps uploaded reports (served by the Reports dashboard)."""
        return self.basedir / names.REPORTS_DIR

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
    def environments(self) -> list[str]:
        """The deploy environments in use (a `[deploy.<env>]` with a branch)."""
        return [name for name, section in self.deploy.items() if section.branch]

    @property
    def scanner_env(self) -> dict[str, str]:
        """`[scanners]` as the variables trivy and the pip-audit helper read, for every job."""
        values = {
            "TRIVY_DB_REPOSITORY": self.scanners.trivy_db_repository,
            "TRIVY_CACHE_DIR": self.scanners.trivy_cache_dir,
            "TRIVY_SKIP_DB_UPDATE": "true" if self.scanners.trivy_skip_db_update else "",
            "PIP_AUDIT_INDEX_URL": self.scanners.pip_audit_index_url,
        }
        return {name: value for name, value in values.items() if value}

    @property
    def pipeline_default_file(self) -> Path:
        return resolve_path(self.pipeline.default_file) if self.pipeline.default_file else DEFAULT_PIPELINE

    @property
    def buildbot_url(self) -> str:
        url = self.master.buildbot_url or f"http://localhost:{self.www.port}/"
        return url if url.endswith("/") else url + "/"


def resolve_path(value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else ROOT / path


def is_section(name: str) -> bool:
    environment = name[len(DEPLOY_PREFIX) :] if name.startswith(DEPLOY_PREFIX) else ""
    return name in SECTIONS or bool(environment and ENVIRONMENT_NAME.match(environment))


def _section_type(section: str) -> type:
    return DeploySection if section.startswith(DEPLOY_PREFIX) else SECTIONS[section]


def _field_types(section: str) -> dict[str, Any]:
    return typing.get_type_hints(_section_type(section))


def _flatten(data: Mapping[str, Any], source: str) -> dict[str, dict[str, Any]]:
    """Turn TOML tables into {"section": {key: value}}, dotted names for nested tables."""
    out: dict[str, dict[str, Any]] = {}
    for name, table in data.items():
        if not isinstance(table, dict):
            raise SettingsError(f"{source}: '{name}' must be a [section], got a plain value")
        if name == "deploy":
            for env, subtable in table.items():
                if not isinstance(subtable, dict):
                    raise SettingsError(f"{source}: [deploy] {env}: expected a [deploy.<environment>] table")
                if not ENVIRONMENT_NAME.match(env):
                    raise SettingsError(
                        f"{source}: [deploy.{env}]: an environment name is lower-case letters, digits and '_'"
                    )
                out[f"deploy.{env}"] = subtable
            continue
        nested = {k: v for k, v in table.items() if isinstance(v, dict) and is_section(f"{name}.{k}")}
        own = table  # the section's own keys, without its nested sections
        if nested:
            for sub, subtable in nested.items():
                out[f"{name}.{sub}"] = subtable
            own = {k: v for k, v in table.items() if k not in nested}
            if not own:
                continue
        if name not in SECTIONS:
            # [deploy.qa] arrives as {"deploy": {"qa": {...}}}: name the table the user wrote
            subtables = [f"{name}.{k}" for k, v in own.items() if isinstance(v, dict)]
            shown = ", ".join(subtables) if subtables and len(subtables) == len(own) else name
            raise SettingsError(f"{source}: unknown section [{shown}] (known: {', '.join(SECTIONS)}, deploy.<env>)")
        out[name] = own
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
    elif origin is dict and (not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values())):
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


def _env_overrides(environ: Mapping[str, str], sections: list[str]) -> dict[str, dict[str, Any]]:
    names = {env_name(s, k): (s, k) for s in sections for k in _field_types(s)}
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
    for section in deploy_sections(merged):
        table = merged[section]
        for key, value in DEPLOY_DEFAULTS.items():
            table.setdefault(key, list(value) if isinstance(value, list) else value)
        missing = [k for k in _field_types(section) if k not in table]
        if missing:
            raise SettingsError(
                f"[{section}]: lacks {', '.join(missing)} (a deploy environment needs a branch and a url)"
            )
    check_values(merged)


def load_settings(environ: Mapping[str, str] | None = None, defaults: Path = DEFAULTS_FILE) -> Settings:
    """Read defaults, the PIPELINE_CONFIG overlay and environment overrides."""
    environ = os.environ if environ is None else environ
    merged: dict[str, dict[str, Any]] = {}
    _merge(merged, _read_toml(defaults), str(defaults))
    overlay_path = environ.get(CONFIG_ENV, "").strip()
    if overlay_path:
        overlay = Path(overlay_path).expanduser()
        _merge(merged, _read_toml(overlay), str(overlay))
    _merge(merged, _env_overrides(environ, [*SECTIONS, *deploy_sections(merged)]), "environment")
    _validate(merged)
    if not merged["master"]["basedir"]:  # the default: outside this checkout and any project (workdirs.py)
        merged["master"]["basedir"] = str(workdirs.default_basedir(ROOT, environ))
    built = {name: SECTIONS[name](**merged[name]) for name in SECTIONS}
    deploy = {name[len(DEPLOY_PREFIX) :]: DeploySection(**merged[name]) for name in deploy_sections(merged)}
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
