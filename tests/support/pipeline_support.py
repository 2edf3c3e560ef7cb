"""A pipeline's job and a registry's builder by name, for tests that know it is there: `Pipeline.job` and
`Registry.entry` answer None for an unknown name, these fail the test naming it. `SEED_CHECKS`: the
verdict jobs of the seed pipeline (this repository's `.namaskah-ci.yml` and the shipped default) on main."""

from __future__ import annotations

from namaskah_ci.pipeline.registry import BuilderEntry, Registry
from namaskah_ci.pipeline.specs import JobSpec, Pipeline

SEED_CHECKS = [
    "test-py3.9",
    "test-py3.11",
    "lint",
    "integration",
    "migration-test",
    "security",
    "container-scan",
    "secrets-scan",
]


def job_of(pipeline: Pipeline, builder: str) -> JobSpec:
    job = pipeline.job(builder)
    assert job is not None, f"no job {builder!r} in the pipeline (it has {pipeline.builders})"
    return job


def entry_of(registry: Registry, builder: str) -> BuilderEntry:
    entry = registry.entry(builder)
    assert entry is not None, f"no builder {builder!r} in the registry (it has {registry.builders})"
    return entry
