"""`working_directory` (job, step) and a step's `env` with `${NAME}` in the pipeline file (schema v1, optional
keys): what validates, what the model holds, the one line a bad value gets, the JSON Schema for editors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from namaskah_ci.jobs import commands as job_commands
from namaskah_ci.pipeline.model import PipelineError, load_pipeline
from namaskah_ci.pipeline.specs import JobSpec

ROOT = Path(__file__).resolve().parents[3]
SCHEMA_FILE = ROOT / "master" / "namaskah-ci.schema.json"
FILE = """\
version: 1
env: {A: top, B: "${A}-b"}
jobs:
  api:
    working_directory: ./backend/
    env: {C: "${B}-c", A: job}
    steps:
      - pytest
      - name: migrate
        run: alembic upgrade head
        working_directory: backend/db
        env: {APP_DATABASE_URL: "postgresql+asyncpg://${PGUSER}:${PGPASSWORD}@${PGHOST}/x", RAW: "$${X} $Y"}
      - {name: root, run: ls, working_directory: .}
"""


def job_of(text: str) -> JobSpec:
    job = load_pipeline(text, ".namaskah-ci.yml").job("api")
    assert job is not None
    return job


def problem(text: str) -> str:
    with pytest.raises(PipelineError) as caught:
        load_pipeline(text, ".namaskah-ci.yml")
    return caught.value.summary


def test_the_working_directories_and_step_env_reach_the_model_in_order():
    job = job_of(FILE)
    assert job.working_directory == "backend"
    assert [step.working_directory for step in job.steps] == ["backend", "backend/db", ""]
    assert job.steps[1].env == (
        ("APP_DATABASE_URL", "postgresql+asyncpg://${PGUSER}:${PGPASSWORD}@${PGHOST}/x"),
        ("RAW", "$${X} $Y"),
    )
    # the order ci_step.py expands in: the top level's (but what the job sets), then the job's
    assert job.env == (("B", "${A}-b"), ("C", "${B}-c"), ("A", "job"))
    assert JobSpec.from_dict(json.loads(json.dumps(job.to_dict()))) == job


def test_a_step_carries_its_directory_and_env_to_ci_step_and_job_json_the_files_order():
    job = job_of(FILE)
    layout = job_commands.JobLayout(runner="py", helpers_dir="/h", cache_root="/c")
    argv = job_commands.step_argv(layout, job.steps[1])
    at = argv.index("run")
    assert argv[at + 1 : at + 6] == [
        "--step",
        "--workdir=backend/db",
        "--env=APP_DATABASE_URL=postgresql+asyncpg://${PGUSER}:${PGPASSWORD}@${PGHOST}/x",
        "--env=RAW=$${X} $Y",
        "--",
    ]
    assert job_commands.step_argv(layout, job.steps[2])[at + 1 : at + 3] == ["--step", "--"]  # the root
    document = job_commands.job_document(
        job, layout, interpreter="python3", base_path="/usr/bin", worker_env={"B": "operator's"}
    )
    assert document["file_env"] == ["B", "C", "A"] and document["env"]["B"] == "${A}-b"


@pytest.mark.parametrize(
    ("where", "value", "expected"),
    [
        ("job", "/srv/app", "jobs.api.working_directory: '/srv/app' must be a directory of the repository"),
        ("job", "../other", "jobs.api.working_directory: '../other' must be a directory of the repository"),
        ("step", "a/../../b", "jobs.api.steps[0].working_directory: 'a/../../b' must be a directory of the"),
        ("step", "", "jobs.api.steps[0].working_directory: must be a directory of the repository, 1 to 500"),
    ],
)
def test_a_working_directory_outside_the_checkout_is_one_line_naming_the_key(where, value, expected):
    if where == "job":
        text = f"version: 1\njobs:\n  api:\n    working_directory: {json.dumps(value)}\n    steps: [x]\n"
    else:
        text = f"version: 1\njobs:\n  api:\n    steps:\n      - {{run: x, working_directory: {json.dumps(value)}}}\n"
    summary = problem(text)
    assert summary.startswith(".namaskah-ci.yml:") and expected in summary, summary
    assert "\n" not in summary


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ('{A: "${B"}', "jobs.api.steps[0].env.A: has a '${' without its '}'"),
        ('{A: "${B:-x}"}', "jobs.api.steps[0].env.A: '${B:-x}' is not a reference"),
        ('{A: "${1}"}', "jobs.api.steps[0].env.A: '${1}' is not a reference"),
        ("{PATH: /x}", "jobs.api.steps[0].env: PATH is set by Namaskah CI and cannot be set here"),
        ("{NAMASKAH_CI_JOB: x}", "jobs.api.steps[0].env: NAMASKAH_CI_JOB is set by Namaskah CI"),
        ('{A: "a\\nb"}', "jobs.api.steps[0].env.A: holds a control character"),
    ],
)
def test_a_bad_step_env_is_one_line_naming_the_key(env, expected):
    summary = problem(f"version: 1\njobs:\n  api:\n    steps:\n      - {{run: x, env: {env}}}\n")
    assert expected in summary and "\n" not in summary, summary


def test_the_top_level_and_job_env_take_the_same_reference_syntax():
    assert "env.A: has a '${' without its '}'" in problem('version: 1\nenv: {A: "${B"}\njobs: {api: {steps: [x]}}\n')
    assert "jobs.api.env.A: '${}' is not a reference" in problem(
        'version: 1\njobs: {api: {env: {A: "${}"}, steps: [x]}}\n'
    )


def test_an_unknown_step_key_names_the_new_ones():
    summary = problem("version: 1\njobs:\n  api:\n    steps:\n      - {run: x, workdir: backend}\n")
    assert "unknown key (known: name, run, continue, allow_failure, only_with_secret, env, working_directory)" in (
        summary
    )


def test_the_json_schema_for_editors_takes_the_new_keys():
    jsonschema = pytest.importorskip("jsonschema")
    import yaml

    schema = json.loads(SCHEMA_FILE.read_text())
    jsonschema.validate(yaml.safe_load(FILE), schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"version": 1, "jobs": {"a": {"steps": [{"run": "x", "workdir": "b"}]}}}, schema)
