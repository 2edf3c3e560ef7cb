"""Docker mode: a job's Python comes from `[workers] images` (no engine: the settings, the plan, the file).

A version with an image key runs in that image; one without fails the pipeline file naming the
setting and what to add, in one line, before any job runs.
"""

from __future__ import annotations

import pytest

from namaskah_ci.builders.setup import make_policy
from namaskah_ci.pipeline.model import PipelineError, load_pipeline
from namaskah_ci.workers.docker import config as dc
from unit_support import docker_settings

FILE = 'version: 1\njobs:\n  check:\n    matrix: {python: ["3.11", "3.12"]}\n    steps: [python -V]\n'


def test_a_python_without_an_image_fails_naming_the_setting_and_what_to_add() -> None:
    settings = docker_settings()
    policy = make_policy(settings, dc.make_docker_plan(settings))
    with pytest.raises(PipelineError) as raised:
        load_pipeline(FILE, ".namaskah-ci.yml", policy)
    summary = raised.value.summary
    assert "\n" not in summary and "Traceback" not in summary
    assert "Python 3.12 has no worker image on this master ([workers] images: 3.11, 3.9)" in summary
    assert 'add "3.12" = "<its tag>" to [workers] images' in summary and "python:3.12-slim" in summary


def test_a_python_with_an_image_key_runs_in_that_image() -> None:
    settings = docker_settings(images={"3.12": "namaskah-ci/worker:py3.12"})
    pipeline = load_pipeline(FILE, ".namaskah-ci.yml", make_policy(settings, dc.make_docker_plan(settings)))
    assert [job.builder for job in pipeline.jobs] == ["check-py3.11", "check-py3.12"]
    assert dc.image_for(settings, "check-py3.12", "check", "3.12", ()) == "namaskah-ci/worker:py3.12"
    assert dc.image_for(settings, "check-py3.11", "check", "3.11", ()) == "namaskah-ci/worker:py3.11"
