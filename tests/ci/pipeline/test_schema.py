"""The pipeline file (`.namaskah-ci.yml`, schema v1): parsing, validation, the model, the seed's rows.

Every bad-file case of the pipeline-file issue gives one line naming the file, the line, the key
and the problem; the reference service's own file and the shipped default say what the seed says.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from namaskah_ci.pipeline.model import PipelineError, PipelinePolicy, load_pipeline, load_pipeline_file
from namaskah_ci.pipeline.schema import schema_document
from namaskah_ci.pipeline.specs import JobSpec
from pipeline_support import SEED_CHECKS, job_of

ROOT = Path(__file__).resolve().parents[3]
REPO_FILE = ROOT / ".namaskah-ci.yml"
DEFAULT_FILE = ROOT / "master" / "default-pipeline.yml"
SCHEMA_FILE = ROOT / "master" / "namaskah-ci.schema.json"


def load(text: str, **policy):
    return load_pipeline(text, ".namaskah-ci.yml", PipelinePolicy(**policy))


def problem(text: str, **policy) -> str:
    with pytest.raises(PipelineError) as caught:
        load(text, **policy)
    summary = caught.value.summary
    assert "\n" not in summary and "Traceback" not in summary
    return summary


def job(lines: str) -> str:
    return "version: 1\njobs:\n  a:\n" + "".join(f"    {line}\n" for line in lines.splitlines())


# --- the example of the issue, key by key ------------------------------------------------------

ISSUE_EXAMPLE = """
version: 1
python: "3.11"
requirements: [requirements-dev.txt]
env: {APP_ENV: test}
jobs:
  test:
    matrix: {python: ["3.9", "3.11"]}
    context: "test (Python {python})"
    timeout: 30
    services: [postgres, redis]
    env: {SECRET_KEY: test-only}
    secrets: [codecov_token]
    steps:
      - alembic upgrade head
      - {name: unit tests, run: "pytest tests/unit --junitxml=reports/junit.xml"}
    reports:
      - {path: reports/junit.xml, kind: junit}
      - {path: reports/coverage.xml, kind: coverage}
  lint:
    steps:
      - {name: black, run: "black --check app", continue: true}
      - {name: flake8, run: "flake8 app", continue: true}
  secrets-scan:
    requirements: []
    tools: [gitleaks]
    history: full
    branches: [main, "release/*"]
    steps: ["gitleaks detect --source . --config tools/gitleaks.toml --redact"]
  codeql:
    verdict: false
    schedule: "35 19 * * 6"
    steps: [semgrep]
"""


def test_the_issue_example_expands_into_builders_with_every_default_resolved():
    pipeline = load(ISSUE_EXAMPLE)
    assert pipeline.builders == ["test-py3.9", "test-py3.11", "lint", "secrets-scan", "codeql"]
    test39 = job_of(pipeline, "test-py3.9")
    assert (test39.python, test39.context, test39.timeout_minutes) == ("3.9", "test (Python 3.9)", 30)
    assert test39.environment == {"APP_ENV": "test", "SECRET_KEY": "test-only"}
    assert test39.requirements == ("requirements-dev.txt",) and test39.services == ("postgres", "redis")
    assert [s.name for s in test39.steps] == ["alembic upgrade head", "unit tests"]
    assert [(r.path, r.kind) for r in test39.reports] == [
        ("reports/junit.xml", "junit"),
        ("reports/coverage.xml", "coverage"),
    ]
    lint = job_of(pipeline, "lint")
    assert lint.context == "lint" and lint.timeout_minutes == 30 and all(s.continue_on_failure for s in lint.steps)
    scan = job_of(pipeline, "secrets-scan")
    assert scan.requirements == () and scan.tools == ("gitleaks",) and scan.history == "full"
    assert scan.runs_on("main") and scan.runs_on("release/1.2") and not scan.runs_on("develop")
    assert [j.builder for j in pipeline.verdict_jobs("develop")] == ["test-py3.9", "test-py3.11", "lint"]
    codeql = job_of(pipeline, "codeql")
    assert not codeql.verdict and codeql.schedule == "35 19 * * 6" and codeql.priority == "low"
    assert [j.builder for j in pipeline.analysis_jobs("main")] == ["codeql"]


def test_a_job_travels_as_a_plain_dict_and_comes_back_equal():
    for spec in load(ISSUE_EXAMPLE).jobs:
        assert JobSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


def test_environment_values_may_be_numbers_or_booleans():
    pipeline = load(job("env: {PORT: 8000, DEBUG: false, RATIO: 0.5}\nsteps: [x]"))
    assert job_of(pipeline, "a").environment == {"PORT": "8000", "DEBUG": "false", "RATIO": "0.5"}


def test_yaml_anchors_and_merge_keys_work():
    text = """
version: 1
x-defaults: &defaults
  timeout: 7
jobs:
  a:
    <<: *defaults
    steps: [x]
"""
    with pytest.raises(PipelineError, match=r"x-defaults: unknown key"):
        load(text)
    pipeline = load(
        text.replace(
            "x-defaults: &defaults\n  timeout: 7\njobs:", "jobs:\n  base: &defaults\n    timeout: 7\n    steps: [y]"
        )
    )
    assert job_of(pipeline, "a").timeout_minutes == 7


# --- every bad file: one line, file:line: key: problem ------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            "version: 1\njobs:\n  a:\n    steps: [x\n",
            r"^\.namaskah-ci\.yml:4: YAML syntax error: while parsing a flow sequence",
        ),
        (
            job("stepz: [x]\nsteps: [y]"),
            r"^\.namaskah-ci\.yml:4: jobs\.a\.stepz: unknown key \(known: python, requirements",
        ),
        (
            job('timeout: "5"\nsteps: [x]'),
            r"^\.namaskah-ci\.yml:4: jobs\.a\.timeout: must be a whole number, got str '5'",
        ),
        (
            job("services: [postgres, mysql]\nsteps: [x]"),
            r":4: jobs\.a\.services\[1\]: unknown service 'mysql' \(known: postgres, redis\)",
        ),
        (job("steps: []"), r":4: jobs\.a\.steps: must not be empty"),
        (job("timeout: 5"), r":3: jobs\.a\.steps: is required"),
        (
            'version: 1\njobs:\n  t:\n    matrix: {python: ["3.9"]}\n    steps: [x]\n  t-py3.9:\n    steps: [y]\n',
            r":6: jobs\.t-py3\.9: builder 't-py3\.9' is also made by job 't'",
        ),
        (
            "version: 1\njobs:\n  pipeline:\n    steps: [x]\n",
            r":3: jobs\.pipeline: 'pipeline' is the pipeline's own builder",
        ),
        ("version: 1\njobs:\n  deploy-prod:\n    steps: [x]\n", r":3: jobs\.deploy-prod: .*deploy builders"),
        ("version: 1\njobs:\n  rollback-x:\n    steps: [x]\n", r":3: jobs\.rollback-x: .*deploy builders"),
        (
            job("secrets: [render_api_key]\nsteps: [x]"),
            r":4: jobs\.a\.secrets\[0\]: 'render_api_key' belongs to the master",
        ),
        (job("secrets: [staging_deploy_hook]\nsteps: [x]"), r"'staging_deploy_hook' belongs to the master"),
        (job("secrets: [github_token]\nsteps: [x]"), r"'github_token' belongs to the master"),
        (
            job("secrets: [sentry_dsn]\nsteps: [x]"),
            r"'sentry_dsn' is not allowed \(\[pipeline\] job_secrets: codecov_token, safety_api_key\)",
        ),
        (
            "version: 1\npython: 3.10\njobs:\n  a:\n    steps: [x]\n",
            r":2: python: write the version as a string, e\.g\. python: \"3\.1\"",
        ),
        ("version: 2\njobs: {}\n", r":1: version: unsupported schema version 2"),
        ("jobs:\n  a:\n    steps: [x]\n", r":1: version: is required"),
        ("- a list\n", r":1: \(top level\): the file must be a mapping"),
        ("", r":1: \(top level\): the file must be a mapping"),
        ("version: 1\njobs:\n  a: !!python/object:os.system\n    steps: [x]\n", r":3: YAML tags are not allowed"),
        ("version: 1\njobs:\n  a:\n    steps: [!Ref x]\n", r"YAML tags are not allowed"),
        ("version: 1\njobs:\n  a:\n    steps: [x]\n  a:\n    steps: [y]\n", r":5: duplicate key 'a'"),
        ("version: 1\njobs:\n  bad name:\n    steps: [x]\n", r":3: jobs\.bad name: 'bad name' is not a valid name"),
        (job('schedule: "61 * * * *"\nsteps: [x]'), r":4: jobs\.a\.schedule: minute: '61' is outside 0-59"),
        (job("env: {PATH: /tmp}\nsteps: [x]"), r"jobs\.a\.env: PATH is set by Namaskah CI"),
        (job('context: "t {foo}"\nsteps: [x]'), r"jobs\.a\.context: unknown placeholder 'foo'"),
        (
            job("steps: [{run: x, only_with_secret: codecov_token}]"),
            r"only_with_secret: 'codecov_token' is not in this job's secrets",
        ),
        (
            job("reports: [{path: ../etc/passwd, kind: junit}]\nsteps: [x]"),
            r"jobs\.a\.reports\[0\]\.path: '\.\./etc/passwd' must be a path inside",
        ),
        (job("reports: [{path: r.xml, kind: pdf}]\nsteps: [x]"), r"jobs\.a\.reports\[0\]\.kind: unknown value 'pdf'"),
        (job('matrix: {python: ["3.9", "3.9"]}\nsteps: [x]'), r"jobs\.a\.matrix\.python: lists a version twice"),
        ("version: 1\njobs: {}\n", r":2: jobs: must not be empty"),
    ],
)
def test_a_bad_file_is_one_line_naming_file_line_key_and_problem(text, expected):
    assert re.search(expected, problem(text)), problem(text)


def test_more_problems_are_counted_and_all_listed():
    with pytest.raises(PipelineError) as caught:
        load(job("timeout: 0\nservices: [mysql]\nsteps: []"))
    assert caught.value.summary.endswith("(and 2 more problems)")
    assert len(caught.value.problems) == 3


def test_a_file_over_the_size_limit_is_refused_before_parsing():
    big = job("steps: [x]") + "# " + "x" * 2000 + "\n"
    assert re.search(
        r":1: \(file\): \d+ bytes is over the limit of 1024 \(\[pipeline\] max_file_bytes\)",
        problem(big, max_bytes=1024),
    )


def test_aliases_cannot_blow_the_document_up():
    text = "version: 1\na: &a [x, x, x, x, x, x, x, x, x, x]\n"
    for level in "bcdefgh":
        previous = chr(ord(level) - 1)
        aliases = ", ".join([f"*{previous}"] * 10)
        text += f"{level}: &{level} [{aliases}]\n"
    text += "jobs:\n  j:\n    steps: [x]\n"
    assert "more than" in problem(text)


def test_allowed_secrets_come_from_the_policy_and_python_from_the_images():
    pipeline = load(job("secrets: [sentry_dsn]\nsteps: [x]"), job_secrets=("sentry_dsn",))
    assert job_of(pipeline, "a").secrets == ("sentry_dsn",)
    assert "Python 3.12 has no worker image on this master ([workers] images: 3.9, 3.11)" in problem(
        job('python: "3.12"\nsteps: [x]'), known_pythons=("3.9", "3.11")
    )


# --- the shipped files -------------------------------------------------------------------------


def test_the_json_schema_file_is_the_models_schema():
    assert json.loads(SCHEMA_FILE.read_text()) == schema_document()


@pytest.mark.parametrize("path", [REPO_FILE, DEFAULT_FILE], ids=["repository", "default"])
def test_the_shipped_files_validate_against_the_json_schema_too(path):
    jsonschema = pytest.importorskip("jsonschema")
    import yaml

    jsonschema.validate(yaml.safe_load(path.read_text()), json.loads(SCHEMA_FILE.read_text()))
    assert path.read_text().startswith("# yaml-language-server: $schema=")


def test_this_repository_runs_the_same_jobs_as_the_default_pipeline():
    """The same jobs; only this repository's file knows its layout (inputs) and adds weekly full runs."""

    def comparable(job):
        return dataclasses.replace(job, inputs=None, schedule=None)

    ours = load_pipeline_file(str(REPO_FILE)).jobs
    default = load_pipeline_file(str(DEFAULT_FILE)).jobs
    assert [comparable(job) for job in ours] == [comparable(job) for job in default]
    assert all(job.inputs for job in ours) and not any(job.inputs for job in default)


@pytest.fixture(scope="module")
def seed():
    return {spec.builder: spec for spec in load_pipeline_file(str(REPO_FILE)).jobs}


def test_the_seed_checks_are_the_verdict_on_main_codeql_and_performance_after_them():
    pipeline = load_pipeline_file(str(REPO_FILE))
    assert [j.builder for j in pipeline.verdict_jobs("main")] == SEED_CHECKS
    assert [j.builder for j in pipeline.analysis_jobs("main")] == ["codeql", "performance"]
    assert pipeline.analysis_jobs("develop") == []


def test_timeouts_and_contexts_match_the_seed_pipeline(seed):
    timeouts = {
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
    assert {name: seed[name].timeout_minutes for name in timeouts} == timeouts
    assert seed["test-py3.9"].context == "test (Python 3.9)" and seed["lint"].context == "lint"


def test_the_seed_rows(seed):
    assert [s.name for s in seed["lint"].steps] == ["black", "isort", "flake8", "mypy"]
    assert all(s.continue_on_failure for s in seed["lint"].steps) and "--line-length 120" in seed["lint"].steps[0].run
    assert seed["integration"].services == ("postgres", "redis") and " -x " in seed["integration"].steps[0].run
    assert [s.run for s in seed["migration-test"].steps] == [
        "alembic upgrade head",
        "alembic downgrade -1",
        "alembic upgrade head",
        "alembic upgrade head",
    ]
    assert seed["migration-test"].services == ("postgres",)
    assert seed["container-scan"].tools == ("docker", "trivy") and seed["secrets-scan"].tools == ("gitleaks",)
    assert seed["secrets-scan"].history == "full"
    assert seed["codeql"].schedule == "35 19 * * 6" and not seed["codeql"].verdict
    codecov = seed["test-py3.11"].steps[-1]
    assert codecov.only_with_secret == "codecov_token" and codecov.allow_failure
    assert seed["security"].steps[-1].only_with_secret == "safety_api_key"
    assert "check_performance_thresholds.py" in seed["performance"].steps[-1].run


def test_helpers_come_from_namaskah_ci_never_from_the_checkout(seed):
    for spec in seed.values():
        for step in spec.steps:
            for script in re.findall(r"(\S*ci_\w+\.py)", step.run):
                assert script.startswith('"$NAMASKAH_CI_HELPERS/'), (spec.builder, step.run)


def test_every_declared_report_is_named_by_a_step(seed):
    for spec in seed.values():
        commands = " ".join(step.run for step in spec.steps)
        for report in spec.reports:
            stem = report.path.rsplit(".", 1)[0].replace("_stats", "")
            named = (
                stem in commands or report.path in commands or f"--output-dir {report.path.split('/')[0]}" in commands
            )
            assert named, (spec.builder, report.path)


# --- what one file may cost: bounded parsing ([limits], issue 21) ---------------------------------

GOOD = "version: 1\njobs:\n  a:\n    steps: [x]\n"


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "nesting",
    [
        "x: " + "[" * 30_000 + "]" * 30_000,  # 60 KB: PyYAML took 48 s, then RecursionError
        "x: " + "{a: " * 12_000 + "}" * 12_000,
        "x:\n" + "- " * 20_000 + "a",  # block sequences
        "x: &deep " + "[" * 20 + "]" * 20 + "\ny: " + "[" * 20 + "*deep" + "]" * 20,  # 41 levels through an alias
    ],
    ids=["flow-lists", "flow-mappings", "block-lists", "alias"],
)
def test_nesting_deeper_than_the_limit_is_one_line_naming_the_limit(nesting):
    summary = problem(GOOD + nesting + "\n")
    assert re.fullmatch(r"\.namaskah-ci\.yml:[56]: nesting deeper than 32 levels \(\[limits\] file_depth\)", summary)


def test_the_depth_limit_is_the_policys():
    assert load(GOOD, max_depth=4).builders == ["a"]  # mapping, jobs, a, steps
    assert problem(GOOD, max_depth=3) == ".namaskah-ci.yml:4: nesting deeper than 3 levels ([limits] file_depth)"


def test_values_over_the_limit_are_one_line_naming_the_limit():
    text = GOOD + "x: [" + ", ".join(["v"] * 40) + "]\n"
    expected = ".namaskah-ci.yml:5: more than 30 values, aliases expanded ([limits] file_nodes)"
    assert problem(text, max_nodes=30) == expected
    with pytest.raises(PipelineError, match="x: unknown key"):
        load(text, max_nodes=60)


def test_an_alias_inside_the_collection_it_names_is_refused():
    # composed, it is a list holding itself: turning it into data recursed until RecursionError
    assert problem(GOOD + "x: &a [*a]\n") == ".namaskah-ci.yml:5: alias *a is inside the collection it names"


def test_the_time_limit_stops_the_work_and_names_the_limit():
    text = GOOD + "".join(f"x{i}: [a, b, c]\n" for i in range(2000))
    summary = problem(text, max_seconds=1e-9)
    expected = r"\.namaskah-ci\.yml(:\d+)?: reading the file took more than 1e-09 s \(\[limits\] file_seconds\)"
    assert re.fullmatch(expected, summary), summary


def test_the_deadline_is_checked_as_the_parse_goes():
    from namaskah_ci.pipeline.loader import Deadline, Limits, YamlProblem, parse

    ticks = iter(range(1000))  # a clock one second further at each look
    deadline = Deadline(5, clock=lambda: next(ticks))
    with pytest.raises(YamlProblem, match=r"took more than 5 s \(\[limits\] file_seconds\)"):
        parse(GOOD + "x: [" + ", ".join(["v"] * 100) + "]\n", Limits(deadline=deadline))
    assert next(ticks) < 10  # it stopped at the first look past the deadline


def test_job_builders_over_the_limit_are_refused_naming_the_count_and_the_key():
    text = job('matrix: {python: ["3.9", "3.10", "3.11"]}\nsteps: [x]') + "  b:\n    steps: [y]\n"
    assert load(text, max_builders=4).builders == ["a-py3.9", "a-py3.10", "a-py3.11", "b"]
    assert problem(text, max_builders=3) == (
        ".namaskah-ci.yml:2: jobs: 4 job builders (matrix entries expanded) is over the limit of 3 "
        "([limits] pipeline_builders)"
    )
    # a few KB expanding to thousands of builders through aliases: refused by the default limit (64)
    versions = "&v [" + ", ".join(f'"3.{n}"' for n in range(40)) + "]"
    many = "version: 1\njobs:\n" + "".join(
        f"  j{n}:\n    matrix: {{python: {versions if n == 0 else '*v'}}}\n    steps: [x]\n" for n in range(50)
    )
    assert len(many) < 4096
    assert problem(many).startswith(
        ".namaskah-ci.yml:2: jobs: 2000 job builders (matrix entries expanded) is over "
        "the limit of 64 ([limits] pipeline_builders)"
    )


def test_the_policy_takes_the_limits_from_the_settings():
    from namaskah_ci.settings import load_settings

    env = {"PIPELINE_LIMITS_FILE_DEPTH": "7", "PIPELINE_LIMITS_PIPELINE_BUILDERS": "9"}
    policy = PipelinePolicy.from_settings(load_settings(env))
    assert (policy.max_depth, policy.max_nodes, policy.max_seconds, policy.max_builders) == (7, 20000, 5, 9)


@pytest.mark.parametrize("value", ['"one\\nINJECTED=1"', '"a\\rb"', '"bell\\a"', '"nul\\0"', '"x\\u2028y"', '"\\x85"'])
@pytest.mark.parametrize("where", ["top", "job"])
def test_an_env_value_with_a_newline_or_control_character_is_refused_naming_the_key(value, where):
    text = (
        f"version: 1\nenv: {{A: {value}}}\njobs:\n  a:\n    steps: [x]\n"
        if where == "top"
        else job(f"env: {{A: {value}}}\nsteps: [x]")
    )
    summary = problem(text)
    key = "env.A" if where == "top" else "jobs.a.env.A"
    assert re.match(rf"^\.namaskah-ci\.yml:\d+: {re.escape(key)}: holds a control character \(", summary), summary
    assert "an environment value is one line" in summary


def test_an_env_value_may_hold_tabs_and_any_printable_text():
    assert job_of(load(job('env: {A: "a\\tb", B: "é ü ✓ <x>"}\nsteps: [x]')), "a").environment == {
        "A": "a\tb",
        "B": "é ü ✓ <x>",
    }


def test_the_json_schema_refuses_a_newline_in_an_env_value_too():
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(SCHEMA_FILE.read_text())
    jsonschema.validate({"version": 1, "env": {"A": "a\tb"}, "jobs": {"a": {"steps": ["x"]}}}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"version": 1, "env": {"A": "a\nb"}, "jobs": {"a": {"steps": ["x"]}}}, schema)
