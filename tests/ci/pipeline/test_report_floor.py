"""A coverage report's own floor: `reports: [{path: coverage.xml, kind: coverage, min: 15}]` (the
master's `[checks] coverage_min` is only the default), refused on any other kind, in one line."""

from __future__ import annotations

import pytest

from namaskah_ci.pipeline.model import PipelineError, load_pipeline
from namaskah_ci.reports.kinds import coverage_floor, coverage_verdict


def reports(entry: str) -> str:
    return f"version: 1\njobs:\n  a:\n    steps: [pytest]\n    reports:\n      - {entry}\n"


def test_a_coverage_report_carries_its_floor():
    (job,) = load_pipeline(reports("{path: coverage.xml, kind: coverage, min: 15}"), ".namaskah-ci.yml").jobs
    (report,) = job.reports
    assert report.min == 15
    assert coverage_floor(report.min, 40) == (15, "the report's min")
    assert coverage_verdict(28.02, *coverage_floor(report.min, 40)) == ""
    assert coverage_verdict(12.0, *coverage_floor(report.min, 40)) == "coverage 12.0% is under the report's min (15%)"


def test_without_one_the_masters_default_applies_and_says_so():
    (job,) = load_pipeline(reports("{path: coverage.xml, kind: coverage}"), ".namaskah-ci.yml").jobs
    assert job.reports[0].min is None
    assert coverage_verdict(28.02, *coverage_floor(None, 40)) == "coverage 28.02% is under [checks] coverage_min (40%)"


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("{path: junit.xml, kind: junit, min: 15}", "only a `kind: coverage` report has a floor"),
        ("{path: coverage.xml, kind: coverage, min: 101}", "less than or equal to 100"),
        ("{path: coverage.xml, kind: coverage, min: -1}", "greater than or equal to 0"),
    ],
)
def test_a_floor_elsewhere_or_out_of_range_is_one_line(entry, expected):
    with pytest.raises(PipelineError) as caught:
        load_pipeline(reports(entry), ".namaskah-ci.yml")
    assert expected in caught.value.summary and "\n" not in caught.value.summary
    assert "jobs.a.reports" in caught.value.summary
