"""The job table (`namaskah_ci.jobs`): validation, and that each row says what the seed pipeline says."""

from __future__ import annotations

import dataclasses
import re

import pytest

from namaskah_ci.jobs import (
    REPORTS_DIR,
    Command,
    Job,
    JobTableError,
    Report,
    check_job_names,
    make_jobs,
    validate_jobs,
)


def jobs_by_name(**kwargs) -> dict[str, Job]:
    return {job.name: job for job in make_jobs(**kwargs)}


def argv_of(job: Job, name: str) -> tuple[str, ...]:
    (command,) = [c for c in job.commands if c.name == name]
    return command.argv


def row(name: str = "x", **kwargs) -> Job:
    kwargs.setdefault("commands", (Command("run", ("true",)),))
    return Job(name=name, context=name, timeout_minutes=kwargs.pop("timeout_minutes", 5), **kwargs)


# --- validation -----------------------------------------------------------------------------------


def test_the_real_table_validates_and_is_fresh_each_call():
    first, second = make_jobs(), make_jobs()
    validate_jobs(first)
    assert first == second and first is not second
    assert len({job.name for job in first}) == len(first)
    with pytest.raises(dataclasses.FrozenInstanceError):
        first[0].timeout_minutes = 1  # type: ignore[misc]


def test_duplicate_names_are_refused_naming_the_job():
    with pytest.raises(JobTableError, match=r"job 'lint': duplicate name"):
        validate_jobs((row("lint"), row("other"), row("lint")))


def test_unknown_service_is_refused_naming_job_and_service():
    with pytest.raises(JobTableError, match=r"job 'db': unknown service 'mysql' \(known: postgres, redis\)"):
        validate_jobs((row("db", services=("postgres", "mysql")),))


@pytest.mark.parametrize("path", ["/etc/passwd", "../outside.xml", "a/../../b.xml", ".."])
def test_report_paths_must_stay_under_the_reports_directory(path):
    with pytest.raises(JobTableError, match=rf"job 'r': report path '{re.escape(path)}' must stay under"):
        validate_jobs((row("r", reports=(Report("bad", path),)),))


def test_nested_report_paths_are_fine():
    validate_jobs((row("r", reports=(Report("html", "htmlcov/index.html"), Report("dots", "a..b/c.xml"))),))


def test_jobs_without_commands_or_time_are_refused():
    with pytest.raises(JobTableError, match=r"job 'empty': has no commands"):
        validate_jobs((row("empty", commands=()),))
    with pytest.raises(JobTableError, match=r"job 'zero': timeout must be positive"):
        validate_jobs((row("zero", timeout_minutes=0),))


# --- the rows -------------------------------------------------------------------------------------


def test_pipeline_checks_in_table_order():
    assert check_job_names(make_jobs()) == [
        "test-py3.9", "test-py3.11", "lint", "integration", "migration-test",
        "security", "container-scan", "secrets-scan",
    ]
    codeql = jobs_by_name()["codeql"]
    assert not codeql.in_pipeline and not codeql.required


def test_timeouts_match_the_seed_pipeline():
    timeouts = {name: job.timeout_minutes for name, job in jobs_by_name().items()}
    assert timeouts == {
        "test-py3.9": 30,
        "test-py3.11": 30,
        "lint": 15,
        "integration": 20,
        "migration-test": 15,
        "security": 20,
        "container-scan": 15,
        "secrets-scan": 10,
        "codeql": 30,
    }


@pytest.mark.parametrize("coverage_min", [0, 40, 73])
def test_coverage_min_flows_into_both_test_jobs(coverage_min):
    jobs = jobs_by_name(coverage_min=coverage_min)
    for name, python in (("test-py3.9", "3.9"), ("test-py3.11", "3.11")):
        job = jobs[name]
        argv = argv_of(job, "pytest")
        assert job.python == python and job.codecov
        assert f"--cov-fail-under={coverage_min}" in argv
        assert [a for a in argv if a.startswith("--cov-fail-under")] == [f"--cov-fail-under={coverage_min}"]
        assert f"--cov-report=xml:{REPORTS_DIR}/coverage.xml" in argv
        assert f"--junitxml={REPORTS_DIR}/junit.xml" in argv


def test_lint_has_four_independent_steps():
    lint = jobs_by_name()["lint"]
    assert [c.name for c in lint.commands] == ["black", "isort", "flake8", "mypy"]
    assert [c.halt_on_failure for c in lint.commands] == [False] * 4
    assert argv_of(lint, "black")[:2] == ("black", "--check")
    assert argv_of(lint, "isort")[:2] == ("isort", "--check-only")
    assert lint.services == () and lint.python == "3.11"


def test_integration_stops_at_the_first_failure_with_both_services():
    job = jobs_by_name()["integration"]
    argv = argv_of(job, "integration tests")
    assert "-x" in argv and argv[argv.index("-m", 3) + 1] == "integration"
    assert "tests/app/integration" in argv
    assert set(job.services) == {"postgres", "redis"}


def test_migration_runs_the_four_alembic_steps_in_order():
    job = jobs_by_name()["migration-test"]
    assert [c.argv for c in job.commands] == [
        ("alembic", "upgrade", "head"),
        ("alembic", "downgrade", "-1"),
        ("alembic", "upgrade", "head"),
        ("alembic", "upgrade", "head"),
    ]
    assert all(c.halt_on_failure for c in job.commands)
    assert job.services == ("postgres",)


def test_security_writes_bandit_json_and_sarif_and_runs_pip_audit_strictly():
    job = jobs_by_name()["security"]
    bandit = argv_of(job, "bandit")
    sarif = argv_of(job, "bandit sarif")
    audit = argv_of(job, "pip-audit")
    assert bandit[0] == "bandit" and ("-f", "json") == bandit[bandit.index("-f"):bandit.index("-f") + 2]
    assert bandit[bandit.index("-o") + 1] == f"{REPORTS_DIR}/bandit.json"
    assert ("-f", "sarif") == sarif[sarif.index("-f"):sarif.index("-f") + 2]
    assert sarif[sarif.index("-o") + 1] == f"{REPORTS_DIR}/bandit.sarif"
    assert audit[:2] == ("python", "scripts/ci_pip_audit.py") and "--strict" in audit
    assert audit[audit.index("-r") + 1] == "requirements.txt"
    assert audit[audit.index("--output") + 1] == f"{REPORTS_DIR}/pip-audit.json"
    assert {r.path for r in job.reports} >= {"bandit.json", "bandit.sarif", "pip-audit.json"}
    assert job.safety


def test_scanners_declare_their_tools():
    jobs = jobs_by_name()
    assert jobs["container-scan"].tools == ("docker", "trivy")
    assert jobs["secrets-scan"].tools == ("gitleaks",)
    assert "--redact" in argv_of(jobs["secrets-scan"], "gitleaks")


def test_every_declared_report_is_written_by_a_command():
    for job in make_jobs():
        text = " ".join(arg for command in job.commands for arg in command.argv)
        for report in job.reports:
            top = report.path.split("/")[0]
            written = f"{REPORTS_DIR}/{top}" in text or f"--output-dir {REPORTS_DIR}" in text
            assert written, f"{job.name}: nothing writes {report.path}"
