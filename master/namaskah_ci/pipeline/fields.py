"""The values of the pipeline file's keys (schema version 1): names, patterns, paths, versions and
environment values, as pydantic annotated types with the checks that give one clear line each, and
`Strict`, the base of every model of `pipeline/schema.py` (unknown keys refused, nothing coerced but
environment values written out as strings).
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, StringConstraints

from namaskah_ci.helpers.ci_env import RESERVED, RESERVED_PREFIX, reference_problem
from namaskah_ci.pipeline.inputs import pattern_problem

SCHEMA_VERSION = 1
SERVICES = ("postgres", "redis")
REPORT_KINDS = ("junit", "coverage", "sarif", "html", "json", "csv", "text")
PRIORITIES = ("high", "normal", "low")
HISTORY = ("revision", "full")
JOB_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,59}$"
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
SECRET_NAME_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
TOOL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$"
PACKAGE_NAME_PATTERN = r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,62}[A-Za-z0-9])?$"  # a dependency group or extra
# a service's database and user (SQL identifiers needing no quotes) and a given password (nothing a URL,
# SQL or redis.conf needs quoted); the same as helpers/ci_servers.py checks on the worker
SERVICE_NAME_PATTERN = r"^[a-z_][a-z0-9_]{0,62}$"
SERVICE_PASSWORD_PATTERN = r"^[A-Za-z0-9._~-]{1,128}$"
SERVICE_VERSION_PATTERN = r"^[0-9]{1,3}$"
POSTGRES_RESERVED = ("postgres", "template0", "template1")  # the server's own superuser and databases
# the job's base environment is the master's: a file may not replace it
RESERVED_ENV = RESERVED  # ci_env.py refuses them in $NAMASKAH_CI_ENV too
RESERVED_ENV_PREFIX = RESERVED_PREFIX
# control characters but tab (C0, DEL, C1) and the Unicode line and paragraph separators: a newline
# in a value would forge lines in the job's `environment` log
CONTROL_CHARACTERS = "\\u0000-\\u0008\\u000a-\\u001f\\u007f-\\u009f\\u2028\\u2029"  # a regex class's inside
ENV_VALUE_PATTERN = f"^[^{CONTROL_CHARACTERS}]*$"  # for the JSON Schema
ENV_VALUE_CONTROL = re.compile(f"[{CONTROL_CHARACTERS}]")


def python_version(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        raise ValueError(f'write the version as a string, e.g. python: "{value}" (YAML reads {value} as a number)')
    return value


def env_value(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if value is None:
        raise ValueError('needs a value (write an empty string as "")')
    if not isinstance(value, str):
        raise ValueError("must be a string, a number or true/false")
    control = ENV_VALUE_CONTROL.search(value)
    if control:
        raise ValueError(
            f"holds a control character ({control.group()!r}): an environment value is one line "
            "(tabs allowed); write longer text into a file a step reads"
        )
    problem = reference_problem(value)
    if problem:
        raise ValueError(problem)
    return value


def service_version(value: Any) -> Any:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise ValueError(f'write the version as a string, e.g. version: "{value}" (YAML reads {value} as a number)')
    return value


def service_password(value: Any) -> Any:
    # checked here, whatever its type, so that no message repeats the value
    if not isinstance(value, str) or not re.match(SERVICE_PASSWORD_PATTERN, value):
        raise ValueError(f"must be a string of {PATTERN_HINTS[SERVICE_PASSWORD_PATTERN]} (the value is not shown)")
    return value


def service_shorthand(value: Any) -> Any:
    if isinstance(value, str) and value not in SERVICES:
        raise ValueError(f"unknown service {value!r} (known: {', '.join(SERVICES)})")
    return {"name": value} if isinstance(value, str) else value


def relative_path(value: Any) -> Any:
    if isinstance(value, str):
        parts = value.split("/")
        if value.startswith("/") or ".." in parts or not value.strip():
            raise ValueError(f"{value!r} must be a path inside the repository (relative, no '..')")
    return value


def working_directory(value: Any) -> Any:
    if isinstance(value, str):
        if not value.strip() or len(value) > 500:
            raise ValueError("must be a directory of the repository, 1 to 500 characters ('.' is its root)")
        parts = [part for part in value.split("/") if part not in ("", ".")]
        if value.startswith("/") or ".." in parts or ENV_VALUE_CONTROL.search(value) or "\\" in value:
            raise ValueError(f"{value!r} must be a directory of the repository (relative to its root, no '..')")
        return "/".join(parts)  # "./backend/" is "backend"; "." the root ("")
    return value


def input_pattern(value: Any) -> Any:
    if isinstance(value, str):
        problem = pattern_problem(value)
        if problem:
            raise ValueError(problem)
    return value


PythonVersion = Annotated[str, BeforeValidator(python_version), StringConstraints(pattern=r"^[0-9]+\.[0-9]+$")]
EnvName = Annotated[str, StringConstraints(pattern=ENV_NAME_PATTERN)]
EnvValue = Annotated[
    str,
    BeforeValidator(
        env_value,
        json_schema_input_type=Annotated[str, StringConstraints(pattern=ENV_VALUE_PATTERN)] | int | float | bool,
    ),
]
RelativePath = Annotated[str, BeforeValidator(relative_path)]
WorkingDirectory = Annotated[
    str,
    BeforeValidator(
        working_directory, json_schema_input_type=Annotated[str, StringConstraints(min_length=1, max_length=500)]
    ),
]
JobName = Annotated[str, StringConstraints(pattern=JOB_NAME_PATTERN)]
SecretName = Annotated[str, StringConstraints(pattern=SECRET_NAME_PATTERN)]
ToolName = Annotated[str, StringConstraints(pattern=TOOL_PATTERN)]
InputPattern = Annotated[str, BeforeValidator(input_pattern), StringConstraints(min_length=1, max_length=200)]
Environment = dict[EnvName, EnvValue]
GroupName = Annotated[str, StringConstraints(pattern=PACKAGE_NAME_PATTERN)]
ServicePassword = Annotated[
    str,
    BeforeValidator(
        service_password,
        json_schema_input_type=Annotated[str, StringConstraints(pattern=SERVICE_PASSWORD_PATTERN)],
    ),
]
ServiceVersion = Annotated[str, BeforeValidator(service_version), StringConstraints(pattern=SERVICE_VERSION_PATTERN)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)


def check_env(env: dict[str, str]) -> dict[str, str]:
    for name in env:
        if name in RESERVED_ENV or name.startswith(RESERVED_ENV_PREFIX):
            raise ValueError(f"{name} is set by Namaskah CI and cannot be set here")
    return env


def step_shorthand(value: Any) -> Any:
    return {"run": value} if isinstance(value, str) else value


PATTERN_HINTS = {
    JOB_NAME_PATTERN: "letters, digits, '.', '_' and '-', starting with a letter or digit, at most 60",
    ENV_NAME_PATTERN: "an environment variable name (letters, digits, '_')",
    SECRET_NAME_PATTERN: "a secret name (lower-case letters, digits, '_')",
    TOOL_PATTERN: "a program name",
    PACKAGE_NAME_PATTERN: "a group or extra name (letters, digits, '.', '_', '-')",
    r"^[0-9]+\.[0-9]+$": 'a version such as "3.11"',
    SERVICE_NAME_PATTERN: "lower-case letters, digits and '_', not starting with a digit, at most 63",
    SERVICE_PASSWORD_PATTERN: "letters, digits and . _ ~ - (1 to 128; nothing a URL needs quoted)",
    SERVICE_VERSION_PATTERN: 'a major version such as "16"',
}


def pattern_hint(message: str) -> str:
    """pydantic says "String should match pattern '...'": say what the pattern means."""
    found = re.search(r"pattern '(.+)'", message)
    if found and found.group(1) in PATTERN_HINTS:
        return f"must be {PATTERN_HINTS[found.group(1)]}"
    return message
