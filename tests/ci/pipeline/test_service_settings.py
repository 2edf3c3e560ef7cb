"""A job's `services` as names or mappings (`{name, version, database, user, password}`): the schema's one
line per bad key, the model's settings, and a given password kept out of the job's property (`to_dict`)."""

from __future__ import annotations

import json

import pytest

from namaskah_ci.pipeline.model import PipelineError, load_pipeline
from namaskah_ci.pipeline.specs import JobSpec, ServiceSpec


def job_with(services: str) -> JobSpec:
    text = f"version: 1\njobs:\n  api:\n    requirements: []\n    services: {services}\n    steps: [pytest]\n"
    [job] = load_pipeline(text, ".namaskah-ci.yml").jobs
    return job


def problem(services: str) -> str:
    with pytest.raises(PipelineError) as raised:
        job_with(services)
    assert len(raised.value.problems) == 1, raised.value.problems
    return raised.value.summary


def test_a_mapping_chooses_version_database_user_and_password_beside_a_name() -> None:
    job = job_with('[{name: postgres, version: "15", database: app_test, user: app, password: test}, redis]')
    assert job.services == ("postgres", "redis")
    assert job.service("postgres") == ServiceSpec("postgres", "15", "app_test", "app", password_given=True)
    assert job.service("redis") == ServiceSpec("redis")  # the defaults: the mode's own
    assert dict(job.service_passwords) == {"postgres": "test"}


def test_a_given_password_is_never_in_the_jobs_property_and_a_job_read_from_it_says_it_lacks_it() -> None:
    job = job_with("[{name: postgres, password: s3cret-Word}, {name: redis, password: r3dis}]")
    document = job.to_dict()
    assert "s3cret-Word" not in json.dumps(document) and "r3dis" not in json.dumps(document)
    again = JobSpec.from_dict(json.loads(json.dumps(document)))
    assert again == job and again.service_settings == job.service_settings
    assert again.passwords_missing and not job.passwords_missing
    assert not job_with("[postgres]").passwords_missing


@pytest.mark.parametrize(
    ("services", "expected"),
    [
        ("[{name: postgres, db: x}]", "services[0].db: unknown key (known: name, version, database, user, password)"),
        ("[{name: postgres, version: 16}]", 'services[0].version: write the version as a string, e.g. version: "16"'),
        ('[{name: postgres, version: "16.1"}]', "services[0].version: '16.1' must be a major version such as \"16\""),
        ("[{name: postgres, database: App-Test}]", "services[0].database: 'App-Test' must be lower-case letters"),
        ("[{name: postgres, user: 1app}]", "services[0].user: '1app' must be lower-case letters"),
        ("[{name: postgres, user: postgres}]", "services[0].user: 'postgres' is the server's own; choose another"),
        ("[{name: redis, database: cache}]", "services[0].database: only postgres has a database and a user"),
        ("[{name: mysql}]", "services[0].name: unknown service 'mysql' (known: postgres, redis)"),
        ("[mysql]", "services[0]: unknown service 'mysql' (known: postgres, redis)"),
        ("[{version: '15'}]", "services[0].name: is required"),
        ("[postgres, {name: postgres, version: '15'}]", "services: lists postgres twice"),
    ],
)
def test_a_bad_service_is_one_line_naming_the_key(services: str, expected: str) -> None:
    summary = problem(services)
    assert summary.startswith(".namaskah-ci.yml:5: jobs.api.")
    assert expected in summary, summary


@pytest.mark.parametrize("password", ['"two words"', "1234", '"it\'s"'])
def test_a_bad_password_is_named_but_never_repeated(password: str) -> None:
    summary = problem(f"[{{name: postgres, password: {password}}}]")
    assert "services[0].password: must be a string of letters, digits and" in summary
    assert "(the value is not shown)" in summary
    assert password.strip('"') not in summary
