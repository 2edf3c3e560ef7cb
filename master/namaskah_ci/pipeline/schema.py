"""The pipeline file's schema, version 1 (`.namaskah-ci.yml`), as pydantic models.

These models say what a file may contain; `pipeline/model.py` turns a validated file
into the typed pipeline model (matrix expanded, defaults applied, the master's
policy checked). `schema_document()` is the JSON Schema shipped for editors
(`master/namaskah-ci.schema.json`, the yaml-language-server convention).
Every model forbids unknown keys and coerces nothing, except that environment
values may be numbers or booleans (written out as strings, as YAML users expect);
the values' own rules are `pipeline/fields.py`'s.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, StringConstraints, field_validator, model_validator

from namaskah_ci.pipeline.fields import (
    ENV_VALUE_CONTROL,
    POSTGRES_RESERVED,
    SCHEMA_VERSION,
    SERVICE_NAME_PATTERN,
    Environment,
    GroupName,
    InputPattern,
    JobName,
    PythonVersion,
    RelativePath,
    SecretName,
    ServicePassword,
    ServiceVersion,
    Strict,
    ToolName,
    WorkingDirectory,
    check_env,
    service_shorthand,
    step_shorthand,
)
from namaskah_ci.pipeline.loader import Path
from namaskah_ci.pipeline.schedule import CronError, parse_cron


class StepFile(Strict):
    """One step: a shell line run by `bash -e -o pipefail` from the checkout root (or its working directory)."""

    name: Annotated[str, StringConstraints(min_length=1, max_length=50)] | None = Field(
        None, description="shown in the UI (default: the command's first line)"
    )
    run: Annotated[str, StringConstraints(min_length=1)] = Field(description="the shell line or script")
    continue_: bool = Field(False, alias="continue", description="later steps still run; the job still fails")
    allow_failure: bool = Field(False, description="a failure only warns; the job does not fail")
    only_with_secret: SecretName | None = Field(
        None, description="run only when this secret (listed in the job's secrets) is configured; else skipped"
    )
    env: Environment = Field(
        default_factory=dict, description="this step's own variables, over the job's; ${NAME}: a variable set before"
    )
    working_directory: WorkingDirectory | None = Field(
        None, description="where the step runs, relative to the checkout root (default: the job's)"
    )

    @field_validator("env")
    @classmethod
    def _reserved_env(cls, env: dict[str, str]) -> dict[str, str]:
        return check_env(env)


class ServiceFile(Strict):
    """One service: `postgres` or `redis`, or a mapping choosing its version, database, user and password."""

    name: Literal["postgres", "redis"]
    version: ServiceVersion | None = Field(None, description='major version, e.g. "16" (default: postgres 15, redis 7)')
    database: Annotated[str, StringConstraints(pattern=SERVICE_NAME_PATTERN)] | None = Field(
        None, description="postgres: the job's database (default: namaskah locally, namaskah_ci in docker mode)"
    )
    user: Annotated[str, StringConstraints(pattern=SERVICE_NAME_PATTERN)] | None = Field(
        None, description="postgres: the job's role, owner of the database, no superuser (default: namaskah)"
    )
    password: ServicePassword | None = Field(
        None, description="default: a random one per build; never shown in a property or a log"
    )

    @field_validator("database", "user")
    @classmethod
    def _postgres_only(cls, value: str | None, info: Any) -> str | None:
        if value is not None and info.data.get("name") == "redis":
            raise ValueError("only postgres has a database and a user (redis takes name, version, password)")
        if value in POSTGRES_RESERVED:
            raise ValueError(f"{value!r} is the server's own; choose another name")
        return value


def _pip_spec(value: Any) -> Any:
    if isinstance(value, str):
        if value.startswith("-"):
            raise ValueError(f"{value!r}: a requirement or a path, not a pip option (files: requirements)")
        if value.startswith(".") and ".." in value.split("[", 1)[0].split("/"):
            raise ValueError(f"{value!r} must be a path inside the repository (no '..')")
        if ENV_VALUE_CONTROL.search(value) or not value.strip():
            raise ValueError(f"{value!r} is not a pip requirement")
    return value


PipSpec = Annotated[str, BeforeValidator(_pip_spec), StringConstraints(min_length=1, max_length=200)]


class UvInstall(Strict):
    """`uv sync --frozen` from the project's uv.lock."""

    groups: list[GroupName] = Field(default_factory=list, description="dependency groups (--group) beside dev")
    extras: list[GroupName] = Field(default_factory=list, description="optional dependencies (--extra)")
    all_extras: bool = Field(False, description="every extra (--all-extras)")


class PoetryInstall(Strict):
    """`poetry install --sync` (`poetry sync`) from the project's poetry.lock."""

    with_: list[GroupName] = Field(default_factory=list, alias="with", description="optional groups (--with)")
    extras: list[GroupName] = Field(default_factory=list, description="extras (--extras)")


class InstallFile(Strict):
    """How the job's environment is made, in its working directory; exactly one of the keys."""

    uv: UvInstall | None = None
    poetry: PoetryInstall | None = None
    pip: Annotated[list[PipSpec], Field(min_length=1)] | None = Field(
        None, description='pip specs; a path starting with "." is installed editable: [".[test]"]'
    )

    @model_validator(mode="after")
    def _one(self) -> InstallFile:
        given = [name for name in ("uv", "poetry", "pip") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of uv, poetry, pip" + (f" (got {', '.join(given)})" if given else ""))
        return self


def _exclusive_install(model: Any) -> Any:
    if model.install is not None and model.requirements is not None and "requirements" in model.model_fields_set:
        raise ValueError("requirements and install both given: use one of them")
    return model


class ReportFile(Strict):
    path: RelativePath = Field(description="file or directory, relative to the checkout root")
    kind: Literal["junit", "coverage", "sarif", "html", "json", "csv", "text"]
    title: Annotated[str, StringConstraints(min_length=1, max_length=60)] | None = None
    min: Annotated[int, Field(ge=0, le=100)] | None = Field(
        None, description="coverage only: the job fails under this percentage (default: [checks] coverage_min)"
    )

    @field_validator("min")
    @classmethod
    def _coverage_only(cls, value: int | None, info: Any) -> int | None:
        if value is not None and info.data.get("kind") != "coverage":
            raise ValueError("only a `kind: coverage` report has a floor")
        return value


class MatrixFile(Strict):
    python: Annotated[list[PythonVersion], Field(min_length=1)] = Field(
        description="one builder per version: <job>-py<version>"
    )

    @field_validator("python")
    @classmethod
    def _unique(cls, versions: list[str]) -> list[str]:
        if len(set(versions)) != len(versions):
            raise ValueError("lists a version twice")
        return versions


class JobFile(Strict):
    python: PythonVersion | None = Field(None, description="interpreter version (default: the top-level one)")
    requirements: list[RelativePath] | None = Field(
        None, description="installed into the job's cached virtualenv; [] = no virtualenv"
    )
    install: InstallFile | None = Field(
        None, description="how the environment is made instead of requirements: {uv: {}}, {poetry: {}}, {pip: [...]}"
    )
    env: Environment = Field(default_factory=dict, description="merged over the top-level env")
    working_directory: WorkingDirectory | None = Field(
        None,
        description="where its steps run, relative to the checkout root (requirements, inputs and reports "
        "paths stay relative to the root)",
    )
    matrix: MatrixFile | None = None
    context: Annotated[str, StringConstraints(min_length=1, max_length=100)] | None = Field(
        None, description="commit-status context; {python} is the job's Python version"
    )
    timeout: Annotated[int, Field(ge=1, le=1440)] = Field(30, description="minutes")
    services: list[
        Annotated[
            ServiceFile,
            BeforeValidator(service_shorthand, json_schema_input_type=Literal["postgres", "redis"] | ServiceFile),
        ]
    ] = Field(default_factory=list, description="postgres, redis, or {name, version, database, user, password}")
    secrets: list[SecretName] = Field(
        default_factory=list, description="exported upper-cased; see [pipeline] job_secrets"
    )
    tools: list[ToolName] = Field(default_factory=list, description="programs checked before the job starts")
    history: Literal["revision", "full"] = Field("revision", description="full: every branch and tag fetched too")
    steps: Annotated[
        list[Annotated[StepFile, BeforeValidator(step_shorthand, json_schema_input_type=str | StepFile)]],
        Field(
            min_length=1,
            description="shell lines, or {name, run, continue, allow_failure, only_with_secret, env, "
            "working_directory}",
        ),
    ]
    reports: list[ReportFile] = Field(default_factory=list)
    inputs: Annotated[list[InputPattern], Field(min_length=1)] | None = Field(
        None,
        description="path patterns (.gitignore style, !pattern excludes) of the files the job reads; a revision "
        "whose inputs, job and runtime equal an earlier success reuses it (default: the whole tree)",
    )
    branches: list[Annotated[str, StringConstraints(min_length=1)]] | None = Field(
        None, description="branch names or globs the job runs on (default: every branch)"
    )
    verdict: bool = Field(True, description="false: outside the pipeline's result, started after the checks")
    schedule: str | None = Field(None, description="cron (UTC) on the default branch, e.g. '35 19 * * 6'")
    priority: Literal["high", "normal", "low"] = Field(
        "normal", description="CPU priority on a shared machine (default low when verdict is false)"
    )

    @field_validator("env")
    @classmethod
    def _reserved_env(cls, env: dict[str, str]) -> dict[str, str]:
        return check_env(env)

    @model_validator(mode="after")
    def _one_environment(self) -> JobFile:
        return _exclusive_install(self)  # type: ignore[no-any-return]

    @field_validator("secrets", "tools")
    @classmethod
    def _no_repeats(cls, values: list[str]) -> list[str]:
        repeated = sorted({v for v in values if values.count(v) > 1})
        if repeated:
            raise ValueError(f"lists {', '.join(repeated)} twice")
        return values

    @field_validator("services")
    @classmethod
    def _one_of_each(cls, values: list[ServiceFile]) -> list[ServiceFile]:
        cls._no_repeats([service.name for service in values])
        return values

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                parse_cron(value)
            except CronError as exc:
                raise ValueError(str(exc)) from None
        return value


class PipelineFile(Strict):
    """`.namaskah-ci.yml`, schema version 1."""

    version: Literal[1] = Field(description="schema version")
    python: PythonVersion = Field("3.11", description="default interpreter version of every job")
    requirements: list[RelativePath] = Field(
        default_factory=list, description="default requirement files of every job ([] = no virtualenv)"
    )
    install: InstallFile | None = Field(None, description="default install of every job (instead of requirements)")
    env: Environment = Field(default_factory=dict, description="non-secret environment of every job")
    jobs: Annotated[dict[JobName, JobFile], Field(min_length=1)]

    @field_validator("env")
    @classmethod
    def _reserved_env(cls, env: dict[str, str]) -> dict[str, str]:
        return check_env(env)

    @model_validator(mode="after")
    def _one_environment(self) -> PipelineFile:
        return _exclusive_install(self)  # type: ignore[no-any-return]


def known_keys(path: Path) -> list[str]:
    """The keys allowed at a key path (for "unknown key" messages)."""
    model: Any = PipelineFile
    rest = list(path)
    while rest:
        part = rest.pop(0)
        if model is PipelineFile and part == "jobs":
            model = JobFile
            if rest:
                rest.pop(0)  # the job's name
            else:
                return []
        elif model is JobFile and isinstance(part, str) and part in ("steps", "reports", "matrix", "services"):
            model = {"steps": StepFile, "reports": ReportFile, "matrix": MatrixFile, "services": ServiceFile}[part]
            if rest and isinstance(rest[0], int):
                rest.pop(0)
        elif model in (PipelineFile, JobFile) and part == "install":
            model = InstallFile
        elif model is InstallFile and isinstance(part, str) and part in ("uv", "poetry"):
            model = {"uv": UvInstall, "poetry": PoetryInstall}[part]
        else:
            return []
    return [field.alias or name for name, field in model.model_fields.items()]


def schema_document() -> dict[str, Any]:
    """The JSON Schema of version 1, for editors (`master/namaskah-ci.schema.json`)."""
    schema = PipelineFile.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Namaskah CI pipeline file (.namaskah-ci.yml), version 1"
    return schema


def version_problem(data: Any) -> str | None:
    """A clear line for a missing or unsupported `version` (checked before the rest)."""
    if not isinstance(data, dict):
        return "the file must be a mapping with `version: 1` and `jobs:`"
    if "version" not in data:
        return "is required (write `version: 1` at the top)"
    version = data["version"]
    if version != SCHEMA_VERSION or isinstance(version, bool):
        return f"unsupported schema version {version!r} (this master reads version {SCHEMA_VERSION})"
    return None
