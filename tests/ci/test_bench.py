"""The pipeline benchmark's pure functions (bench/stats.py): summaries, percentiles, the
`elapsedTime=` parser, timelines from recorded events, critical path, overheads, the results
file's shape. Nothing here runs a master or times anything.
"""

from __future__ import annotations

from typing import Any

import pytest

from bench import stats


def test_summary_is_min_median_max_of_the_known_values():
    assert stats.summary([3.0, 1.0, None, 2.0]) == {
        "min": 1.0,
        "median": 2.0,
        "max": 3.0,
        "n": 3,
        "values": [3.0, 1.0, 2.0],
    }
    assert stats.summary([4, 1])["median"] == 2.5
    assert stats.summary([None, float("nan")]) == {"min": None, "median": None, "max": None, "n": 0, "values": []}


def test_percentile_interpolates_between_ranks():
    values = [float(v) for v in range(1, 101)]
    assert stats.percentile(values, 50) == pytest.approx(50.5)
    assert stats.percentile(values, 95) == pytest.approx(95.05)
    assert stats.percentile([7.0], 95) == 7.0
    assert stats.percentile([], 50) is None


def test_elapsed_time_is_read_from_the_header_lines():
    log = "black --check app\nAll done!\nprogram finished with exit code 0\nelapsedTime=1.234567\n"
    assert stats.parse_elapsed(log) == pytest.approx(1.234567)
    git = "git clone --branch main /r .\nelapsedTime=0.360899\ngit checkout -f abc\nelapsedTime=0.153965\n"
    assert stats.parse_elapsed(git) == pytest.approx(0.514864)
    assert stats.parse_elapsed("no header here\nprint('elapsedTime=9') \n") is None
    assert stats.parse_elapsed("") is None


def events_of_one_run():
    t0 = 1000.0
    return t0, [
        (t0 - 5, "builds/1/new", {"buildid": 1}),  # an older build: ignored
        (t0 + 0.4, "changes/7/new", {"revision": "abc"}),
        (t0 + 1.5, "buildsets/3/new", {}),
        (t0 + 1.6, "builds/10/new", {"buildid": 10}),
        (t0 + 1.7, "steps/100/new", {"buildid": 10, "number": 0, "name": "checks"}),
        (t0 + 1.8, "steps/100/started", {"buildid": 10, "number": 0, "name": "checks"}),
        (t0 + 2.0, "builds/11/new", {"buildid": 11}),
        (t0 + 2.1, "steps/110/started", {"buildid": 11, "number": 0, "name": "git"}),
        (t0 + 3.1, "steps/110/finished", {"buildid": 11, "number": 0, "name": "git", "results": 0}),
        (t0 + 3.2, "steps/111/started", {"buildid": 11, "number": 1, "name": "pytest"}),
        (t0 + 9.2, "steps/111/finished", {"buildid": 11, "number": 1, "name": "pytest", "results": 2}),
        (t0 + 9.5, "builds/11/finished", {"buildid": 11, "results": 2}),
        (t0 + 2.2, "builds/12/new", {"buildid": 12}),
        (t0 + 5.2, "builds/12/finished", {"buildid": 12, "results": 0}),
        (t0 + 10.0, "steps/100/finished", {"buildid": 10, "number": 0, "name": "checks", "results": 2}),
        (t0 + 10.3, "builds/10/finished", {"buildid": 10, "results": 2}),
    ]


def test_timeline_from_events_is_relative_to_the_push():
    t0, events = events_of_one_run()
    timeline = stats.build_timeline(events, {10: "pipeline", 11: "test-py3.9", 12: "lint"}, t0)
    assert set(timeline) == {10, 11, 12}
    assert timeline[10]["start"] == pytest.approx(1.6) and timeline[10]["end"] == pytest.approx(10.3)
    test = timeline[11]
    assert test["builder"] == "test-py3.9" and test["results"] == 2
    assert [s["name"] for s in test["steps"]] == ["git", "pytest"]
    assert stats.duration(test["steps"][1]) == pytest.approx(6.0)
    assert stats.first_event(events, "changes", "new", t0, revision="abc") == pytest.approx(0.4)
    assert stats.first_event(events, "changes", "new", t0, revision="zzz") is None
    assert stats.first_event(events, "builds", "new", t0) == pytest.approx(1.6)


def test_critical_path_is_the_longest_single_job():
    jobs: dict[str, dict] = {
        "lint": {"start": 2.0, "end": 20.0},
        "test": {"start": 1.0, "end": 40.5},
        "odd": {"start": 3.0, "end": None},
    }
    name, length = stats.critical_path(jobs)
    assert name == "test" and length == pytest.approx(39.5)
    assert stats.critical_path({}) == (None, None)


def test_step_and_job_overheads_subtract_the_commands_own_runtime():
    job: dict[str, Any] = {
        "start": 0.0,
        "end": 12.0,
        "steps": [
            {"name": "git", "start": 0.5, "end": 1.5, "elapsed": None},
            {"name": "pytest", "start": 2.0, "end": 10.0, "elapsed": 7.25},
            {"name": "black", "start": 10.0, "end": 11.5, "elapsed": 1.0},
        ],
    }
    overheads = stats.step_overheads(job["steps"])
    assert [o["name"] for o in overheads] == ["pytest", "black"]
    assert overheads[0]["overhead"] == pytest.approx(0.75) and overheads[1]["overhead"] == pytest.approx(0.5)
    summary = stats.job_overhead(job)
    assert summary["commands"] == pytest.approx(8.25)
    assert summary["overhead"] == pytest.approx(3.75)
    assert summary["between_steps"] == pytest.approx(12.0 - 10.5)


def test_sequential_bars_run_back_to_back():
    bars = stats.sequential_bars(
        [{"job": "a", "seconds": 2.0, "result": "success"}, {"job": "b", "seconds": 0.0}, {"job": "c", "seconds": 3.5}]
    )
    assert [(b["job"], b["start"], b["end"]) for b in bars] == [("a", 0.0, 2.0), ("b", 2.0, 2.0), ("c", 2.0, 5.5)]


def test_rest_stats_are_milliseconds():
    result = stats.rest_stats({"/api/v2/builds": [0.010, 0.020, 0.030], "/api/v2/builders": []})
    assert result["/api/v2/builds"] == {"requests": 3, "p50_ms": 20.0, "p95_ms": 29.0, "max_ms": 30.0}
    assert result["/api/v2/builders"]["p95_ms"] is None


def figures(**medians):
    return {key: stats.summary([value]) for key, value in medians.items()}


def test_results_document_has_the_ratios_and_checks_every_target():
    figs = figures(
        pipeline_over_sequential=0.55,
        pipeline_over_critical_path=1.3,
        warm_over_cold_install=0.01,
        webhook_to_first_step_s=1.4,
        rest_p95_ms=250.0,
        pipeline_wall_s=90.0,
        pipeline_file_s=0.04,
    )
    doc = stats.results_document(
        date="2026-02-01",
        mode="local",
        machine={"cores": 2, "load_average": {"before": [0.1, 0.2, 0.3]}},
        versions={"buildbot": "4.3.0"},
        settings={},
        rounds=[],
        figures=figs,
    )
    assert set(stats.RESULT_KEYS) <= set(doc)
    assert doc["ratios"]["pipeline_wall / sequential_wall"]["median"] == 0.55
    assert doc["ratios"]["pipeline_wall / critical_path"]["median"] == 1.3
    met = {t["figure"]: t["met"] for t in doc["targets"]}
    assert met == {
        "pipeline_over_sequential": True,
        "pipeline_over_critical_path": False,
        "warm_over_cold_install": True,
        "webhook_to_first_step_s": True,
        "rest_p95_ms": False,
        "pipeline_file_s": True,
    }


def test_results_shape_is_validated():
    good = stats.results_document(
        date="d",
        mode="local",
        machine={"cores": 2, "load_average": None},
        versions={},
        settings={},
        rounds=[],
        figures={},
    )
    assert all(t["met"] is None for t in good["targets"])
    with pytest.raises(ValueError, match="not a min/median/max"):
        stats.validate_results({**good, "figures": {"pipeline_wall_s": 3.0}})
    with pytest.raises(ValueError, match="lack"):
        stats.validate_results({k: v for k, v in good.items() if k != "ratios"})
    with pytest.raises(ValueError, match="cores"):
        stats.validate_results({**good, "machine": {"load_average": None}})


def test_throughput_figures_are_checked_against_their_targets():
    from bench.throughput import TARGETS, figures_of

    def round_with(docs, deploy, floor, critical):
        return {
            "ratios": {
                "docs_over_full": docs,
                "tree_equal_push_to_deploy_s": deploy,
                "four_branches_over_floor": floor,
                "full_over_critical_path": critical,
            }
        }

    figures = {f["key"]: f for f in figures_of([round_with(0.08, 3.7, 1.06, 1.07), round_with(0.12, 6.0, 1.2, 1.2)])}
    assert set(figures) == {key for key, _, _ in TARGETS}
    assert figures["docs_over_full"]["median"] == pytest.approx(0.1) and figures["docs_over_full"]["met"]
    assert figures["tree_equal_push_to_deploy_s"]["median"] == pytest.approx(4.85)
    assert figures["four_branches_over_floor"]["met"]  # median 1.13 <= 1.15
    assert not figures["full_over_critical_path"]["met"]  # median 1.135 > 1.1
