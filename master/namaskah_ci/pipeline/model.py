"""The pipeline model: one typed, resolved pipeline per revision, from its `.namaskah-ci.yml`.

`load_pipeline(text, source, policy)` parses the file safely
(`pipeline_yaml`), validates it against schema version 1 (`pipeline_file`),
expands each job's matrix into builders (`test` → `test-py3.9`, `test-py3.11`),
applies the top-level defaults and checks the master's policy (`[pipeline]
job_secrets`, reserved builder names, known interpreters). Any problem raises
`PipelineError`, whose `summary` is one line: `file:line: key: problem`.

What one file may cost is bounded (`[limits]`): its bytes, its nesting depth
and values (`pipeline_yaml`), the job builders it expands to, and a deadline
checked while it is parsed, validated and expanded; the master runs this in a
thread (`pipeline/source.py`), never on the reactor.

Builders, schedulers, factories, reporters and `scripts/run_ci_checks.py` all
take this model (`pipeline/specs.py`: `Pipeline`, `JobSpec` and its parts); a job
travels to its build as `JobSpec.to_dict()` (the `namaskah_job` property). This
module imports no Buildbot.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from namaskah_ci import names
from namaskah_ci.pipeline.fields import pattern_hint
from namaskah_ci.pipeline.loader import DEFAULT_DEPTH, DEFAULT_NODES, Deadline, Limits, Lines, Path, YamlProblem, parse
from namaskah_ci.pipeline.schema import JobFile, PipelineFile, known_keys, version_problem
from namaskah_ci.pipeline.specs import InstallSpec, JobSpec, Pipeline, ReportSpec, ServiceSpec, StepSpec

if TYPE_CHECKING:
    from namaskah_ci.settings import Settings

FILE_NAME = ".namaskah-ci.yml"
DEFAULT_MAX_BYTES = 64 * 1024
DEFAULT_MAX_SECONDS = 5.0  # [limits] file_seconds
DEFAULT_MAX_BUILDERS = 64  # [limits] pipeline_builders


@dataclasses.dataclass(frozen=True)
class PipelinePolicy:
    """What the master allows a pipeline file (from the settings)."""

    job_secrets: tuple[str, ...] = (names.CODECOV_TOKEN, names.SAFETY_API_KEY)
    environments: tuple[str, ...] = ("production", "staging")
    known_pythons: tuple[str, ...] | None = None  # docker mode: versions with a worker image
    max_bytes: int = DEFAULT_MAX_BYTES
    max_depth: int = DEFAULT_DEPTH
    max_nodes: int = DEFAULT_NODES
    max_seconds: float = DEFAULT_MAX_SECONDS
    max_builders: int = DEFAULT_MAX_BUILDERS

    @classmethod
    def from_settings(cls, settings: Settings, known_pythons: tuple[str, ...] | None = None) -> PipelinePolicy:
        """`[pipeline] job_secrets` and `max_file_bytes`, `[limits] file_*` and `pipeline_builders`, the
        deploy environments' names."""
        limits = settings.limits
        return cls(
            job_secrets=tuple(settings.pipeline.job_secrets),
            environments=tuple(settings.deploy),
            known_pythons=known_pythons,
            max_bytes=settings.pipeline.max_file_bytes,
            max_depth=limits.file_depth,
            max_nodes=limits.file_nodes,
            max_seconds=limits.file_seconds,
            max_builders=limits.pipeline_builders,
        )


class PipelineError(Exception):
    """An unusable pipeline file: `summary` is one line, `problems` lists every one found."""

    def __init__(self, summary: str, problems: list[str]):
        super().__init__(summary)
        self.summary = summary
        self.problems = problems


def key_path(loc: Iterable[Any]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + str(part)
    return text or "(top level)"


def _describe(error: ErrorDetails) -> tuple[Path, str]:
    """(key path, problem) of one pydantic error, in the words a pipeline author needs."""
    loc = tuple(part for part in error["loc"] if part != "function-after")
    kind, message, value = error["type"], error["msg"], error.get("input")
    if loc and loc[-1] == "[key]":
        return loc[:-1], f"{value!r} is not a valid name: {pattern_hint(message)}"
    if kind == "missing":
        return loc, "is required"
    if kind == "extra_forbidden":
        known = known_keys(loc[:-1])
        return loc, "unknown key" + (f" (known: {', '.join(known)})" if known else "")
    if kind == "literal_error":
        expected = error.get("ctx", {}).get("expected", "")
        what = "service" if "services" in loc else "value"
        known = expected.replace("'", "").replace(" or ", ", ")
        return loc, f"unknown {what} {value!r} (known: {known})"
    if kind == "value_error":
        return loc, message.removeprefix("Value error, ")
    if kind == "string_pattern_mismatch":
        return loc, f"{value!r} {pattern_hint(message)}"
    if kind == "too_short":
        return loc, "must not be empty"
    simple = {
        "string_type": "must be a string",
        "int_type": "must be a whole number",
        "bool_type": "must be true or false",
        "list_type": "must be a list",
        "dict_type": "must be a mapping",
        "model_type": "must be a mapping",
        "model_attributes_type": "must be a mapping",
    }
    if kind in simple:
        return loc, f"{simple[kind]}, got {type(value).__name__} {value!r}"[:160]
    return loc, message


class _Problems:
    def __init__(self, source: str, lines: Lines):
        self.source = source
        self.lines = lines
        self.found: list[str] = []

    def add(self, loc: Path, problem: str) -> None:
        self.found.append(f"{self.source}:{self.lines.line(loc)}: {key_path(loc)}: {problem}")

    def raise_if_any(self) -> None:
        if self.found:
            more = len(self.found) - 1
            summary = self.found[0] + (f" (and {more} more problem{'s' if more > 1 else ''})" if more else "")
            raise PipelineError(summary, list(self.found))


def _format_context(template: str, python: str) -> str:
    class Values(dict[str, str]):
        def __missing__(self, key: str) -> str:
            raise KeyError(key)

    return template.format_map(Values(python=python))


STEP_NAME_MAX = 50  # Buildbot's limit for a step's name


def _step_name(run: str) -> str:
    first = run.strip().splitlines()[0] if run.strip() else run
    return first if len(first) <= STEP_NAME_MAX else first[: STEP_NAME_MAX - 1] + "…"


def _resolve_job(key: str, job: JobFile, top: PipelineFile, python: str, builder: str) -> JobSpec:
    # the job's requirements or install, else the top level's: one of the two, never both
    own = job.requirements is not None or job.install is not None
    requirements = (job.requirements or []) if own else top.requirements
    install = InstallSpec.from_file(job.install if own else top.install)
    # in the order ci_step.py expands ${NAME}: the top level's (but those the job sets), then the job's
    env = {**{k: v for k, v in top.env.items() if k not in job.env}, **job.env}
    priority = job.priority if "priority" in job.model_fields_set or job.verdict else "low"
    return JobSpec(
        builder=builder,
        job=key,
        python=python,
        context=_format_context(job.context, python) if job.context else builder,
        timeout_minutes=job.timeout,
        steps=tuple(
            StepSpec(
                name=step.name or _step_name(step.run),
                run=step.run,
                continue_on_failure=step.continue_,
                allow_failure=step.allow_failure,
                only_with_secret=step.only_with_secret,
                env=tuple(step.env.items()),
                working_directory=(job.working_directory or "")
                if step.working_directory is None
                else step.working_directory,  # "." (written) is "": the root, over the job's
            )
            for step in job.steps
        ),
        requirements=tuple(requirements),
        env=tuple(env.items()),
        services=tuple(service.name for service in job.services),
        service_settings=tuple(
            ServiceSpec(
                name=s.name,
                version=s.version or "",
                database=s.database or "",
                user=s.user or "",
                password_given=s.password is not None,
            )
            for s in job.services
        ),
        service_passwords=tuple((s.name, s.password) for s in job.services if s.password is not None),
        secrets=tuple(job.secrets),
        tools=tuple(job.tools),
        history=job.history,
        reports=tuple(
            ReportSpec(path=r.path.rstrip("/"), kind=r.kind, title=r.title or f"{r.kind}: {r.path}", min=r.min)
            for r in job.reports
        ),
        inputs=tuple(job.inputs) if job.inputs is not None else None,
        branches=tuple(job.branches) if job.branches is not None else None,
        verdict=job.verdict,
        schedule=job.schedule,
        priority=priority,
        install=install,
        working_directory=job.working_directory or "",
    )


def _check_policy(key: str, job: JobFile, policy: PipelinePolicy, problems: _Problems) -> None:
    where = ("jobs", key)
    for index, secret in enumerate(job.secrets):
        if names.master_only_secret(secret, policy.environments):
            problems.add((*where, "secrets", index), f"{secret!r} belongs to the master and never reaches a job")
        elif secret not in policy.job_secrets:
            allowed = ", ".join(policy.job_secrets) or "none"
            problems.add((*where, "secrets", index), f"{secret!r} is not allowed ([pipeline] job_secrets: {allowed})")
    for index, step in enumerate(job.steps):
        if step.only_with_secret and step.only_with_secret not in job.secrets:
            problems.add(
                (*where, "steps", index, "only_with_secret"), f"{step.only_with_secret!r} is not in this job's secrets"
            )
    if job.context:
        try:
            _format_context(job.context, "3.11")
        except (KeyError, ValueError, IndexError) as exc:
            problems.add((*where, "context"), f"unknown placeholder {exc} (only {{python}} is known)")


def _check_deadline(source: str, deadline: Deadline) -> None:
    if deadline.passed():
        summary = f"{source}: {deadline.problem}"
        raise PipelineError(summary, [summary])


def _build(
    data: PipelineFile, source: str, policy: PipelinePolicy, problems: _Problems, deadline: Deadline
) -> Pipeline:
    jobs: list[JobSpec] = []
    made_by: dict[str, str] = {}
    count = sum(len(job.matrix.python) if job.matrix else 1 for job in data.jobs.values())
    if count > policy.max_builders:
        problems.add(
            ("jobs",),
            f"{count} job builders (matrix entries expanded) is over the limit of {policy.max_builders} "
            "([limits] pipeline_builders)",
        )
        problems.raise_if_any()
    for key, job in data.jobs.items():
        _check_policy(key, job, policy, problems)
    problems.raise_if_any()
    for key, job in data.jobs.items():
        _check_deadline(source, deadline)
        pythons = job.matrix.python if job.matrix else [job.python or data.python]
        for python in pythons:
            builder = names.matrix_builder_name(key, python) if job.matrix else key
            if builder == names.PIPELINE:
                problems.add(("jobs", key), f"{builder!r} is the pipeline's own builder: choose another name")
                continue
            if names.is_reserved_builder(builder):
                problems.add(
                    ("jobs", key), f"{builder!r}: names starting with deploy- or rollback- are the deploy builders'"
                )
                continue
            if builder in made_by:
                problems.add(("jobs", key), f"builder {builder!r} is also made by job {made_by[builder]!r}")
                continue
            if policy.known_pythons is not None and python not in policy.known_pythons:
                where = ("jobs", key, "matrix", "python") if job.matrix else ("jobs", key, "python")
                known = ", ".join(policy.known_pythons)
                problems.add(
                    where,
                    f"Python {python} has no worker image on this master ([workers] images: {known}): build one "
                    f'(workers/python/Dockerfile FROM python:{python}-slim, docs/docker.md) and add "{python}" = '
                    '"<its tag>" to [workers] images',
                )
                continue
            made_by[builder] = key
            jobs.append(_resolve_job(key, job, data, python, builder))
    problems.raise_if_any()
    return Pipeline(source=source, jobs=tuple(jobs))


def load_pipeline(text: bytes | str, source: str, policy: PipelinePolicy | None = None) -> Pipeline:
    """The pipeline model of one file's text; `source` names the file in messages."""
    policy = policy or PipelinePolicy()
    raw = text.encode("utf-8") if isinstance(text, str) else text
    if len(raw) > policy.max_bytes:
        raise PipelineError(
            f"{source}:1: (file): {len(raw)} bytes is over the limit of {policy.max_bytes} ([pipeline] max_file_bytes)",
            [],
        )
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PipelineError(f"{source}:1: (file): not UTF-8 text ({exc.reason} at byte {exc.start})", []) from None
    deadline = Deadline(policy.max_seconds)
    try:
        data, lines = parse(decoded, Limits(depth=policy.max_depth, nodes=policy.max_nodes, deadline=deadline))
    except YamlProblem as exc:
        summary = f"{source}:{exc.line}: {exc.message}" if exc.line else f"{source}: {exc.message}"
        raise PipelineError(summary, [summary]) from None
    problems = _Problems(source, lines)
    version = version_problem(data)
    if version:
        problems.add(() if not isinstance(data, dict) else ("version",), version)
        problems.raise_if_any()
    try:
        model = PipelineFile.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        # an unknown key often explains a "missing" one (a typo): name it first
        for error in sorted(errors, key=lambda e: e["type"] != "extra_forbidden"):
            problems.add(*_describe(error))
        problems.raise_if_any()
    _check_deadline(source, deadline)  # validation is linear in the values counted: a backstop
    return _build(model, source, policy, problems, deadline)


def load_pipeline_file(path: str, source: str | None = None, policy: PipelinePolicy | None = None) -> Pipeline:
    """Read a file from disk (the default pipeline, or a working tree for the local runner)."""
    with open(path, "rb") as handle:
        return load_pipeline(handle.read(), source or path, policy)
