"""The pipeline model's types: a `Pipeline` of `JobSpec`s (matrix expanded, defaults applied) with their
steps, reports, services and install, as `pipeline/model.py` resolves them from a validated file. A job
travels to its build as `JobSpec.to_dict()` (the `namaskah_job` property) and back with
`JobSpec.from_dict`. Pure data; no Buildbot.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from typing import Any

from namaskah_ci.pipeline.schema import InstallFile


@dataclasses.dataclass(frozen=True)
class StepSpec:
    name: str
    run: str
    continue_on_failure: bool = False  # later steps still run; the job still fails
    allow_failure: bool = False  # a failure is a warning
    only_with_secret: str | None = None
    env: tuple[tuple[str, str], ...] = ()  # the step's own, in the file's order; ${NAME} expanded by ci_step.py
    working_directory: str = ""  # relative to the checkout root (the step's, else the job's); "": the root


@dataclasses.dataclass(frozen=True)
class ReportSpec:
    path: str
    kind: str
    title: str
    min: int | None = None  # a coverage report's own floor; None: [checks] coverage_min


@dataclasses.dataclass(frozen=True)
class InstallSpec:
    """`install:`: how the job's environment is made (helpers/ci_install.py), in its working directory."""

    tool: str  # uv | poetry | pip
    groups: tuple[str, ...] = ()  # uv: --group; poetry: --with
    extras: tuple[str, ...] = ()
    all_extras: bool = False  # uv
    specs: tuple[str, ...] = ()  # pip: requirements or paths ("." and "./x" installed editable)

    def to_job(self) -> dict[str, Any]:
        """As job.json's `install` (ci_step.py passes it to ci_venv.py)."""
        return {key: list(value) if isinstance(value, tuple) else value for key, value in vars(self).items()}

    @classmethod
    def from_file(cls, install: InstallFile | None) -> InstallSpec | None:
        if install is None:
            return None
        if install.uv is not None:
            uv = install.uv
            return cls("uv", groups=tuple(uv.groups), extras=tuple(uv.extras), all_extras=uv.all_extras)
        if install.poetry is not None:
            return cls("poetry", groups=tuple(install.poetry.with_), extras=tuple(install.poetry.extras))
        return cls("pip", specs=tuple(install.pip or ()))


@dataclasses.dataclass(frozen=True)
class ServiceSpec:
    """A job's service as the file chose it ("": the mode's default). A password the file gives stays
    out of this (and so out of the build's properties): `JobSpec.service_passwords`."""

    name: str  # postgres | redis
    version: str = ""
    database: str = ""
    user: str = ""
    password_given: bool = False


@dataclasses.dataclass(frozen=True)
class JobSpec:
    """One builder's job at one revision, every default resolved."""

    builder: str
    job: str  # the key under `jobs:` (several builders share it through a matrix)
    python: str
    context: str
    timeout_minutes: int
    steps: tuple[StepSpec, ...]
    requirements: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    services: tuple[str, ...] = ()
    secrets: tuple[str, ...] = ()
    tools: tuple[str, ...] = ()
    history: str = "revision"
    reports: tuple[ReportSpec, ...] = ()
    inputs: tuple[str, ...] | None = None  # None: the whole tree
    branches: tuple[str, ...] | None = None
    verdict: bool = True
    schedule: str | None = None
    priority: str = "normal"
    install: InstallSpec | None = None  # instead of `requirements` (then empty)
    working_directory: str = ""  # the job's default for its steps, relative to the checkout root
    service_settings: tuple[ServiceSpec, ...] = ()  # one per entry of `services`
    # {service: password} the file gives: never in to_dict() (a build property); a job read from its
    # property lacks them (`passwords_missing`) and the master reads them from the file again
    service_passwords: tuple[tuple[str, str], ...] = dataclasses.field(default=(), compare=False, repr=False)

    def service(self, name: str) -> ServiceSpec:
        return next((each for each in self.service_settings if each.name == name), ServiceSpec(name))

    @property
    def passwords_missing(self) -> bool:
        return any(each.password_given for each in self.service_settings) and not self.service_passwords

    def runs_on(self, branch: str | None) -> bool:
        if self.branches is None or branch is None:
            return True
        return any(fnmatch.fnmatchcase(branch, pattern) for pattern in self.branches)

    @property
    def environment(self) -> dict[str, str]:
        return dict(self.env)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        del data["service_passwords"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobSpec:
        values = dict(data)
        values["steps"] = tuple(
            StepSpec(**{**step, "env": tuple((k, v) for k, v in step.get("env", ()))}) for step in values["steps"]
        )
        values["reports"] = tuple(ReportSpec(**report) for report in values.get("reports", ()))
        values["env"] = tuple((k, v) for k, v in values.get("env", ()))
        values["service_settings"] = tuple(ServiceSpec(**each) for each in values.get("service_settings", ()))
        values.pop("service_passwords", None)
        if values.get("install") is not None:
            install = dict(values["install"])
            install.update({key: tuple(install.get(key, ())) for key in ("groups", "extras", "specs")})
            values["install"] = InstallSpec(**install)
        for key in ("requirements", "services", "secrets", "tools"):
            values[key] = tuple(values.get(key, ()))
        for key in ("branches", "inputs"):
            if values.get(key) is not None:
                values[key] = tuple(values[key])
        return cls(**values)


@dataclasses.dataclass(frozen=True)
class Pipeline:
    """The jobs of one revision's pipeline file (or of the default file)."""

    source: str  # "<file> at <revision>" or "the default pipeline (<path>)"
    jobs: tuple[JobSpec, ...]

    def job(self, builder: str) -> JobSpec | None:
        return next((job for job in self.jobs if job.builder == builder), None)

    @property
    def builders(self) -> list[str]:
        return [job.builder for job in self.jobs]

    def verdict_jobs(self, branch: str | None) -> list[JobSpec]:
        """The jobs whose results make the pipeline's result on `branch`."""
        return [job for job in self.jobs if job.verdict and job.runs_on(branch)]

    def analysis_jobs(self, branch: str | None) -> list[JobSpec]:
        """Jobs outside the verdict that run on `branch` once the checks ended."""
        return [job for job in self.jobs if not job.verdict and job.runs_on(branch)]
