"""`install:` in the pipeline file (issue 23 item 4): uv, poetry or pip specs instead of requirement files.

On a job or at the top level (a job's own `install` or `requirements` replaces the top level's);
exactly one tool; never beside `requirements` in the same place; each bad value one line naming the key.
"""

from __future__ import annotations

import json

import pytest

from namaskah_ci.pipeline.model import PipelineError, load_pipeline
from namaskah_ci.pipeline.schema import schema_document
from namaskah_ci.pipeline.specs import InstallSpec, JobSpec


def job_of(pipeline, builder: str):
    found = pipeline.job(builder)
    assert found is not None, f"no job {builder!r} in {pipeline.builders}"
    return found


def load(text: str):
    return load_pipeline(text, ".namaskah-ci.yml")


def problem(text: str) -> str:
    with pytest.raises(PipelineError) as caught:
        load(text)
    assert "\n" not in caught.value.summary and "Traceback" not in caught.value.summary
    return caught.value.summary


def job(lines: str, top: str = "") -> str:
    return f"version: 1\n{top}jobs:\n  a:\n" + "".join(f"    {line}\n" for line in lines.splitlines())


@pytest.mark.parametrize(
    ("install", "expected"),
    [
        ("{uv: {}}", InstallSpec("uv")),
        (
            "{uv: {groups: [lint, docs], extras: [pg], all_extras: true}}",
            InstallSpec("uv", groups=("lint", "docs"), extras=("pg",), all_extras=True),
        ),
        ("{poetry: {}}", InstallSpec("poetry")),
        ("{poetry: {with: [test], extras: [pg]}}", InstallSpec("poetry", groups=("test",), extras=("pg",))),
        (
            '{pip: [".[test]", "./tools", "iniconfig==2.0.0"]}',
            InstallSpec("pip", specs=(".[test]", "./tools", "iniconfig==2.0.0")),
        ),
    ],
)
def test_each_tool_and_its_options_reach_the_job(install, expected):
    spec = job_of(load(job(f"install: {install}\nsteps: [pytest]")), "a")
    assert spec.install == expected
    assert spec.requirements == ()


def test_a_job_travels_with_its_install_and_comes_back_equal():
    spec = job_of(load(job("install: {poetry: {with: [test]}}\nsteps: [pytest]")), "a")
    assert JobSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    assert spec.to_dict()["install"]["tool"] == "poetry"  # so it enters the reuse key with the job


def test_the_top_levels_install_is_every_jobs_unless_a_job_says_its_own():
    text = """\
version: 1
install: {uv: {groups: [test]}}
jobs:
  inherits: {steps: [pytest]}
  own-install: {install: {pip: ["."]}, steps: [pytest]}
  own-requirements: {requirements: [requirements.txt], steps: [pytest]}
  no-venv: {requirements: [], steps: [echo]}
"""
    pipeline = load(text)
    assert job_of(pipeline, "inherits").install == InstallSpec("uv", groups=("test",))
    assert job_of(pipeline, "own-install").install == InstallSpec("pip", specs=(".",))
    assert job_of(pipeline, "own-requirements").install is None
    assert job_of(pipeline, "own-requirements").requirements == ("requirements.txt",)
    assert job_of(pipeline, "no-venv").install is None and job_of(pipeline, "no-venv").requirements == ()


def test_a_jobs_install_replaces_the_top_levels_requirements():
    spec = job_of(load(job("install: {uv: {}}\nsteps: [pytest]", top="requirements: [r.txt]\n")), "a")
    assert spec.install == InstallSpec("uv") and spec.requirements == ()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            job("requirements: [r.txt]\ninstall: {uv: {}}\nsteps: [x]"),
            ": jobs.a: requirements and install both given: use one of them",
        ),
        (
            "version: 1\nrequirements: [r.txt]\ninstall: {uv: {}}\njobs:\n  a: {steps: [x]}\n",
            ": (top level): requirements and install both given: use one of them",
        ),
        (
            job("install: {uv: {}, pip: [.]}\nsteps: [x]"),
            "jobs.a.install: give exactly one of uv, poetry, pip (got uv, pip)",
        ),
        (job("install: {}\nsteps: [x]"), "jobs.a.install: give exactly one of uv, poetry, pip"),
        (job("install: {conda: {}}\nsteps: [x]"), "jobs.a.install.conda: unknown key (known: uv, poetry, pip)"),
        (
            job("install: {uv: {group: [x]}}\nsteps: [x]"),
            "jobs.a.install.uv.group: unknown key (known: groups, extras, all_extras)",
        ),
        (
            job("install: {poetry: {groups: [x]}}\nsteps: [x]"),
            "jobs.a.install.poetry.groups: unknown key (known: with, extras)",
        ),
        (job("install: {pip: []}\nsteps: [x]"), "jobs.a.install.pip: must not be empty"),
        (
            job("install: {pip: [--index-url=https://evil.example]}\nsteps: [x]"),
            "jobs.a.install.pip[0]: '--index-url=https://evil.example': a requirement or a path, not a pip option",
        ),
        (
            job("install: {pip: [../other]}\nsteps: [x]"),
            "jobs.a.install.pip[0]: '../other' must be a path inside the repository",
        ),
        (
            job("install: {uv: {groups: ['a b']}}\nsteps: [x]"),
            "jobs.a.install.uv.groups[0]: 'a b' must be a group or extra name",
        ),
    ],
)
def test_a_bad_install_is_one_line_naming_the_key(text, expected):
    assert expected in problem(text)


def test_the_json_schema_knows_install():
    schema = schema_document()
    assert "install" in schema["$defs"]["JobFile"]["properties"]
    assert "install" in schema["properties"]
    assert set(schema["$defs"]["InstallFile"]["properties"]) == {"uv", "poetry", "pip"}
