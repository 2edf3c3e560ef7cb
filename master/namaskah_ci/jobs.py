"""The job table: every check the pipeline runs, as data.

Each row names a builder, its Python, the per-build services it needs, its
timeout, its commands (argument lists, run from the checkout root with the
job's virtualenv first on PATH), the reports it writes and whether the deploy
gate needs it. Buildbot factories (`factories.py`) and the local runner
(`scripts/run_ci_checks.py`) are both generated from this table, so CI and a
developer's local check cannot drift apart. This module imports no Buildbot.
"""

from __future__ import annotations

import dataclasses

REPORTS_DIR = "reports"
SERVICES = ("postgres", "redis")


@dataclasses.dataclass(frozen=True)
class Command:
    """One step: a name shown in the UI and the argv to run."""

    name: str
    argv: tuple[str, ...]
    halt_on_failure: bool = True


@dataclasses.dataclass(frozen=True)
class Report:
    """A report file or directory a job writes under `reports/`, linked from the build."""

    title: str
    path: str


@dataclasses.dataclass(frozen=True)
class Job:
    name: str
    context: str  # the commit-status context, as the seed names the check
    timeout_minutes: int
    commands: tuple[Command, ...]
    python: str = "3.11"
    requirements: tuple[str, ...] = ("requirements-dev.txt",)
    services: tuple[str, ...] = ()
    tools: tuple[str, ...] = ()  # external programs checked before the job starts
    reports: tuple[Report, ...] = ()
    required: bool = True  # a candidate for [checks] required
    in_pipeline: bool = True  # fanned out by the `pipeline` builder
    codecov: bool = False
    safety: bool = False
    full_history: bool = False
    # one of the pipeline's longest jobs (integration and lint: the critical path of every
    # bench/pipeline_bench.py run): on a shared CPU their commands go ahead of the shorter checks',
    # which fill the gaps (cpu_priority)
    long_job: bool = False


LONG, CHECK, ANALYSIS = "long", "check", "analysis"  # cpu_priority(), first to last


def cpu_priority(job: Job) -> str:
    """Who gets a shared CPU first: the longest checks, then the other checks, then the jobs outside
    the verdict. Local mode maps it to `nice` levels (factories.py), docker mode to CPU shares."""
    if not job.in_pipeline:
        return ANALYSIS
    return LONG if job.long_job else CHECK


class JobTableError(Exception):
    """The job table is inconsistent; the message names the row."""


def _rep(path: str, title: str) -> Report:
    return Report(title=title, path=path)


def _test_job(python: str, coverage_min: int) -> Job:
    r = REPORTS_DIR
    return Job(
        name=f"test-py{python}",
        context=f"test (Python {python})",
        timeout_minutes=30,
        python=python,
        commands=(
            Command(
                "pytest",
                (
                    "python",
                    "-m",
                    "pytest",
                    "tests/app/unit",
                    "-p",
                    "no:cacheprovider",
                    "--cov=app",
                    f"--cov-report=xml:{r}/coverage.xml",
                    f"--cov-report=html:{r}/htmlcov",
                    "--cov-report=term",
                    f"--cov-fail-under={coverage_min}",
                    f"--junitxml={r}/junit.xml",
                ),
            ),
        ),
        reports=(
            _rep("coverage.xml", "coverage XML"),
            _rep("htmlcov/index.html", "coverage HTML"),
            _rep("junit.xml", "JUnit XML"),
        ),
        codecov=True,
    )


def make_jobs(coverage_min: int = 40) -> tuple[Job, ...]:
    """The job table; a fresh tuple on every call."""
    r = REPORTS_DIR
    lint_paths = ("app", "tests/app")
    jobs = (
        _test_job("3.9", coverage_min),
        _test_job("3.11", coverage_min),
        Job(
            name="lint",
            context="lint",
            timeout_minutes=15,
            long_job=True,
            commands=(
                Command("black", ("black", "--check", "--line-length", "120", *lint_paths), False),
                Command("isort", ("isort", "--check-only", "--profile", "black", *lint_paths), False),
                Command("flake8", ("flake8", "--max-line-length", "120", *lint_paths), False),
                Command("mypy", ("mypy", "app"), False),
            ),
        ),
        Job(
            name="integration",
            context="integration",
            timeout_minutes=20,
            services=("postgres", "redis"),
            long_job=True,
            commands=(
                Command(
                    "integration tests",
                    (
                        "python",
                        "-m",
                        "pytest",
                        "tests/app/integration",
                        "-x",
                        "-m",
                        "integration",
                        "-p",
                        "no:cacheprovider",
                        f"--junitxml={r}/junit-integration.xml",
                    ),
                ),
            ),
            reports=(_rep("junit-integration.xml", "JUnit XML"),),
        ),
        Job(
            name="migration-test",
            context="migration-test",
            timeout_minutes=15,
            services=("postgres",),
            commands=(
                Command("upgrade head", ("alembic", "upgrade", "head")),
                Command("downgrade -1", ("alembic", "downgrade", "-1")),
                Command("upgrade head again", ("alembic", "upgrade", "head")),
                Command("upgrade head (idempotent)", ("alembic", "upgrade", "head")),
            ),
        ),
        Job(
            name="security",
            context="security",
            timeout_minutes=20,
            requirements=("requirements-security.txt",),
            commands=(
                Command("bandit", ("bandit", "-r", "app", "-ll", "-f", "json", "-o", f"{r}/bandit.json"), False),
                Command(
                    "bandit sarif", ("bandit", "-r", "app", "-ll", "-q", "-f", "sarif", "-o", f"{r}/bandit.sarif"), False
                ),
                Command(
                    "pip-audit",
                    (  # audits the cached venv of requirements.txt, not a temporary one per run
                        "python",
                        "scripts/ci_pip_audit.py",
                        "-r",
                        "requirements.txt",
                        "--",
                        "--strict",
                        "--progress-spinner=off",
                        "--format",
                        "json",
                        "--output",
                        f"{r}/pip-audit.json",
                    ),
                    False,
                ),
            ),
            reports=(
                _rep("bandit.json", "bandit JSON"),
                _rep("bandit.sarif", "bandit SARIF"),
                _rep("pip-audit.json", "pip-audit JSON"),
            ),
            safety=True,
        ),
        Job(
            name="container-scan",
            context="container-scan",
            timeout_minutes=15,
            requirements=(),
            tools=("docker", "trivy"),
            commands=(
                Command("docker build", ("python", "scripts/ci_container_scan.py", "build", "--tag", "namaskah-app:ci")),
                Command(
                    "trivy",
                    ("python", "scripts/ci_container_scan.py", "scan", "--tag", "namaskah-app:ci", "--sarif", f"{r}/trivy.sarif"),
                ),
            ),
            reports=(_rep("trivy.sarif", "trivy SARIF"),),
        ),
        Job(
            name="secrets-scan",
            context="secrets-scan",
            timeout_minutes=10,
            requirements=(),
            tools=("gitleaks",),
            full_history=True,
            commands=(
                Command(
                    "gitleaks",
                    (
                        "gitleaks",
                        "detect",
                        "--source",
                        ".",
                        "--config",
                        "gitleaks.toml",
                        "--redact",
                        "--no-banner",
                        "--report-format",
                        "sarif",
                        "--report-path",
                        f"{r}/gitleaks.sarif",
                    ),
                ),
            ),
            reports=(_rep("gitleaks.sarif", "gitleaks SARIF"),),
        ),
        Job(
            name="codeql",
            context="codeql",
            timeout_minutes=30,
            requirements=("requirements-static.txt",),
            required=False,
            in_pipeline=False,
            commands=(Command("static analysis", ("python", "scripts/ci_static_analysis.py", "--output-dir", r)),),
            reports=(_rep("static-analysis.sarif", "static analysis SARIF"),),
        ),
    )
    validate_jobs(jobs)
    return jobs


def validate_jobs(jobs: tuple[Job, ...]) -> None:
    """Unique names, known services, reports under the reports directory."""
    seen: set[str] = set()
    for job in jobs:
        if job.name in seen:
            raise JobTableError(f"job {job.name!r}: duplicate name")
        seen.add(job.name)
        if not job.commands:
            raise JobTableError(f"job {job.name!r}: has no commands")
        for service in job.services:
            if service not in SERVICES:
                raise JobTableError(f"job {job.name!r}: unknown service {service!r} (known: {', '.join(SERVICES)})")
        if job.timeout_minutes <= 0:
            raise JobTableError(f"job {job.name!r}: timeout must be positive")
        for report in job.reports:
            if report.path.startswith("/") or ".." in report.path.split("/"):
                raise JobTableError(f"job {job.name!r}: report path {report.path!r} must stay under {REPORTS_DIR}/")


def check_job_names(jobs: tuple[Job, ...]) -> list[str]:
    """Names of the jobs the pipeline fans out to, in table order."""
    return [job.name for job in jobs if job.in_pipeline]
