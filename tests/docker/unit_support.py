"""Shared by the docker-mode unit tests: settings in docker mode, this repository's pipeline and the
job registry it gives, and `namaskah_job` properties of jobs as another revision's file defines them."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from namaskah_ci.pipeline.registry import Registry
from namaskah_ci.pipeline.model import load_pipeline, load_pipeline_file
from namaskah_ci.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
PIPELINE = load_pipeline_file(str(ROOT / ".namaskah-ci.yml"))
REGISTRY = Registry().merge(PIPELINE, default_branch=True)
# `lint` at another revision: another Python, a service, a tool, another priority
OTHER_REVISION = """
version: 1
jobs:
  lint:
    python: "3.9"
    services: [postgres]
    tools: [docker]
    priority: low
    steps: [flake8]
"""


def docker_settings(**workers):
    env = {"PIPELINE_WORKERS_MODE": "docker", "PIPELINE_REPO_URL": "https://example.invalid/namaskah.git"}
    settings = load_settings(env)
    return dataclasses.replace(settings, workers=dataclasses.replace(settings.workers, **workers))


def job_property(builder: str, text: str = OTHER_REVISION) -> dict:
    """A `namaskah_job` property as the fan-out sets it: the job of another revision's file."""
    return load_pipeline(text, ".namaskah-ci.yml").job(builder).to_dict()
