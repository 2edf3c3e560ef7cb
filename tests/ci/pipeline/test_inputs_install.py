"""A job's reuse key and its environment's files (issue 23 item 4): the `install:` spec is part of the job's
definition, and the files its environment is made from are among its inputs even when `inputs:` leaves
them out (`key_patterns`), as are its requirement files: a changed uv.lock never reuses a result."""

from __future__ import annotations

from namaskah_ci.pipeline.inputs import inputs_digest, key_patterns, reuse_key
from namaskah_ci.pipeline.model import load_pipeline


def job_of(pipeline, builder: str):
    found = pipeline.job(builder)
    assert found is not None, f"no job {builder!r} in {pipeline.builders}"
    return found


FILE = """
version: 1
jobs:
  uv: {install: {uv: {}}, inputs: ["app/", "!uv.lock"], steps: [x]}
  uv-groups: {install: {uv: {groups: [lint]}}, inputs: ["app/"], steps: [x]}
  poetry: {install: {poetry: {}}, inputs: ["src/"], steps: [x]}
  pip: {install: {pip: ["./libs[test]", "./libs/extra", "iniconfig"]}, inputs: ["libs/"], steps: [x]}
  requirements: {requirements: [requirements/test.txt], inputs: ["app/"], steps: [x]}
  whole-tree: {install: {uv: {}}, steps: [x]}
"""
TREE = [
    ("100644", "blob", "a" * 40, "app/main.py"),
    ("100644", "blob", "b" * 40, "uv.lock"),
    ("100644", "blob", "c" * 40, "pyproject.toml"),
    ("100644", "blob", "d" * 40, "README.md"),
]


def patterns(job: dict) -> list[str]:
    found = key_patterns(job)
    assert found is not None
    return found


def job(builder: str) -> dict:
    return job_of(load_pipeline(FILE, ".namaskah-ci.yml"), builder).to_dict()


def test_the_environments_files_are_inputs_after_the_jobs_own_patterns():
    assert patterns(job("uv")) == ["app/", "!uv.lock", "/uv.lock", "/pyproject.toml"]
    assert patterns(job("poetry"))[1:] == ["/poetry.lock", "/pyproject.toml"]
    assert patterns(job("pip"))[1:] == [
        "/libs/pyproject.toml",
        "/libs/setup.py",
        "/libs/setup.cfg",
        "/libs/extra/pyproject.toml",
        "/libs/extra/setup.py",
        "/libs/extra/setup.cfg",
    ]
    assert patterns(job("requirements")) == ["app/", "/requirements/test.txt"]
    assert key_patterns(job("whole-tree")) is None  # the whole tree holds them already


def test_a_changed_lock_file_changes_the_key_a_changed_readme_does_not():
    taken = patterns(job("uv"))
    before = inputs_digest(TREE, taken)
    locked = [entry if entry[3] != "uv.lock" else (*entry[:2], "e" * 40, entry[3]) for entry in TREE]
    readme = [entry if entry[3] != "README.md" else (*entry[:2], "f" * 40, entry[3]) for entry in TREE]
    assert inputs_digest(locked, taken) != before
    assert inputs_digest(readme, taken) == before
    assert before[1] == 3


def test_the_install_spec_is_in_the_key():
    runtime = {"mode": "local"}
    uv, grouped = job("uv"), job("uv-groups")
    grouped.update(builder=uv["builder"], job=uv["job"], context=uv["context"], inputs=uv["inputs"])
    assert {k: v for k, v in grouped.items() if k != "install"} == {k: v for k, v in uv.items() if k != "install"}
    assert reuse_key(uv, "files:x", runtime) != reuse_key(grouped, "files:x", runtime)


def test_the_files_are_those_of_the_jobs_working_directory():
    text = """
version: 1
jobs:
  api: {working_directory: backend, install: {uv: {}}, inputs: ["backend/app/"], steps: [x]}
  lib: {working_directory: libs, install: {pip: [".[test]"]}, inputs: ["libs/"], steps: [x]}
"""
    pipeline = load_pipeline(text, ".namaskah-ci.yml")
    assert patterns(job_of(pipeline, "api").to_dict()) == [
        "backend/app/",
        "/backend/uv.lock",
        "/backend/pyproject.toml",
    ]
    assert patterns(job_of(pipeline, "lib").to_dict())[1:] == [
        "/libs/pyproject.toml",
        "/libs/setup.py",
        "/libs/setup.cfg",
    ]
