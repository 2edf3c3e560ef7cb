"""Pure functions of the pipeline benchmark: summaries, timelines, critical path, overheads, targets.

Nothing here touches a master, a process or the disk, so `tests/ci/test_bench.py`
checks it all quickly. Times are seconds (floats); a timeline is relative to the
push that started a pipeline run.
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Iterable
from typing import Any

ELAPSED_RE = re.compile(r"^elapsedTime=([0-9]+(?:\.[0-9]+)?)\s*$", re.MULTILINE)

# (figure key in `figures`, target, "le" = the figure must be at most the target)
TARGETS = (
    ("pipeline_over_sequential", 0.6, "pipeline_wall / sequential_wall (warm caches)"),
    ("pipeline_over_critical_path", 1.15, "pipeline_wall / critical_path"),
    ("warm_over_cold_install", 0.20, "warm test-job dependency install / cold"),
    ("webhook_to_first_step_s", 2.0, "signed webhook push -> first step started (s)"),
    ("rest_p95_ms", 200.0, "REST p95 under 20 concurrent clients (ms), worst endpoint"),
    ("pipeline_file_s", 0.3, "reading and validating .namaskah-ci.yml on the master (s)"),
)
RESULT_KEYS = ("schema", "date", "mode", "machine", "versions", "settings", "rounds", "figures", "ratios", "targets")


def summary(values: Iterable[float | None]) -> dict[str, Any]:
    """min / median / max of the values that are not None (all None when there are none)."""
    kept = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not kept:
        return {"min": None, "median": None, "max": None, "n": 0, "values": []}
    return {
        "min": round(min(kept), 4),
        "median": round(statistics.median(kept), 4),
        "max": round(max(kept), 4),
        "n": len(kept),
        "values": [round(v, 4) for v in kept],
    }


def percentile(values: list[float], p: float) -> float | None:
    """The p-th percentile (0-100), linear between closest ranks (numpy's default)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100.0
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def parse_elapsed(log_text: str) -> float | None:
    """The commands' own runtime from a stdio log's `elapsedTime=` lines, or None when it has none.

    A step that runs several remote commands (the git checkout: clone or fetch, checkout,
    rev-parse) logs one line per command: they add up."""
    found = ELAPSED_RE.findall(log_text or "")
    return round(sum(float(value) for value in found), 6) if found else None


def build_timeline(events: list[tuple[float, str, dict]], builders: dict[int, str], t0: float) -> dict[int, dict]:
    """Builds and their steps from recorded events ((arrival time, routing key, message)).

    `builders` maps the build ids of interest to their builder names; times are relative to `t0`.
    A build is {"builder", "start", "end", "results", "steps": [{"stepid", "name", "start", "end", "results"}]}.
    """
    builds: dict[int, dict] = {}
    steps: dict[int, dict] = {}
    for arrival, key, message in events:
        parts = key.split("/")
        t = arrival - t0
        if len(parts) == 3 and parts[0] == "builds":
            buildid = int(parts[1])
            if buildid not in builders:
                continue
            build = builds.setdefault(
                buildid, {"builder": builders[buildid], "start": None, "end": None, "results": None, "steps": []}
            )
            if parts[2] == "new" and build["start"] is None:
                build["start"] = t
            elif parts[2] == "finished":
                build["end"] = t
                build["results"] = message.get("results")
        elif len(parts) == 3 and parts[0] == "steps":
            if message.get("buildid") not in builders:
                continue
            stepid = int(parts[1])
            step = steps.setdefault(
                stepid,
                {
                    "stepid": stepid,
                    "buildid": message["buildid"],
                    "number": message.get("number"),
                    "name": message.get("name"),
                    "start": None,
                    "end": None,
                    "results": None,
                },
            )
            if parts[2] == "started" and step["start"] is None:
                step["start"] = t
            elif parts[2] == "finished":
                step["end"] = t
                step["results"] = message.get("results")
                step["name"] = message.get("name", step["name"])
    for step in sorted(steps.values(), key=lambda s: (s["buildid"], s["number"] if s["number"] is not None else 0)):
        owner = builds.get(step["buildid"])
        if owner is not None:
            owner["steps"].append({k: v for k, v in step.items() if k != "buildid"})
    return builds


def first_event(events: list[tuple[float, str, dict]], kind: str, event: str, t0: float, **match: Any) -> float | None:
    """Seconds from `t0` to the first `<kind>/<id>/<event>` event at or after t0 whose message matches."""
    for arrival, key, message in events:
        parts = key.split("/")
        if arrival < t0 or len(parts) != 3 or parts[0] != kind or parts[2] != event:
            continue
        if all(message.get(k) == v for k, v in match.items()):
            return arrival - t0
    return None


def duration(item: dict) -> float | None:
    if item.get("start") is None or item.get("end") is None:
        return None
    return item["end"] - item["start"]


def critical_path(jobs: dict[str, dict]) -> tuple[str | None, float | None]:
    """The longest single job: (name, duration); (None, None) when no job has both ends."""
    timed = [(duration(job), name) for name, job in jobs.items() if duration(job) is not None]
    if not timed:
        return None, None
    longest, name = max(timed)
    return name, longest


def step_overheads(steps: list[dict]) -> list[dict]:
    """Per step with a command runtime (`elapsed`): its duration and the part Buildbot added around it."""
    result = []
    for step in steps:
        took = duration(step)
        elapsed = step.get("elapsed")
        if took is None or elapsed is None:
            continue
        result.append(
            {"name": step["name"], "duration": round(took, 4), "command": elapsed, "overhead": round(took - elapsed, 4)}
        )
    return result


def job_overhead(job: dict) -> dict:
    """A job's duration against the sum of its commands' runtimes: what is not a command is overhead."""
    took = duration(job)
    commands = sum(step["elapsed"] for step in job.get("steps", []) if step.get("elapsed") is not None)
    steps_time = sum(d for d in (duration(s) for s in job.get("steps", [])) if d is not None)
    return {
        "duration": None if took is None else round(took, 4),
        "commands": round(commands, 4),
        "steps": round(steps_time, 4),
        "overhead": None if took is None else round(took - commands, 4),
        "between_steps": None if took is None else round(took - steps_time, 4),
    }


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return round(numerator / denominator, 4)


def sequential_bars(jobs: list[dict]) -> list[dict]:
    """Back-to-back bars for the sequential run from each job's `seconds`, in run order."""
    bars, t = [], 0.0
    for job in jobs:
        seconds = float(job.get("seconds") or 0.0)
        bars.append(
            {"job": job["job"], "start": round(t, 4), "end": round(t + seconds, 4), "result": job.get("result")}
        )
        t += seconds
    return bars


def rest_stats(latencies: dict[str, list[float]]) -> dict[str, dict]:
    """p50 / p95 / max in milliseconds per endpoint, from latencies in seconds."""
    out = {}
    for endpoint, values in latencies.items():
        ms = [v * 1000.0 for v in values]
        p50, p95 = percentile(ms, 50), percentile(ms, 95)  # None when there is none
        out[endpoint] = {
            "requests": len(ms),
            "p50_ms": None if p50 is None else round(p50, 2),
            "p95_ms": None if p95 is None else round(p95, 2),
            "max_ms": None if not ms else round(max(ms), 2),
        }
    return out


def check_targets(figures: dict[str, dict]) -> list[dict]:
    """Each target against the median of its figure: {"figure", "what", "target", "median", "worst", "met"}."""
    report = []
    for key, target, what in TARGETS:
        figure = figures.get(key) or {}
        median, worst = figure.get("median"), figure.get("max")
        report.append(
            {
                "figure": key,
                "what": what,
                "target": target,
                "median": median,
                "worst": worst,
                "met": None if median is None else median <= target,
            }
        )
    return report


def results_document(
    *, date: str, mode: str, machine: dict, versions: dict, settings: dict, rounds: list[dict], figures: dict
) -> dict:
    """The results file: figures (each min/median/max), the two headline ratios and the targets."""
    doc = {
        "schema": 1,
        "date": date,
        "mode": mode,
        "machine": machine,
        "versions": versions,
        "settings": settings,
        "rounds": rounds,
        "figures": figures,
        "ratios": {
            "pipeline_wall / sequential_wall": figures.get("pipeline_over_sequential"),
            "pipeline_wall / critical_path": figures.get("pipeline_over_critical_path"),
        },
        "targets": check_targets(figures),
    }
    validate_results(doc)
    return doc


def validate_results(doc: dict) -> None:
    """Raise ValueError unless `doc` has every key and every figure is a min/median/max summary."""
    missing = [key for key in RESULT_KEYS if key not in doc]
    if missing:
        raise ValueError(f"results lack {', '.join(missing)}")
    for name, figure in doc["figures"].items():
        if not isinstance(figure, dict) or not {"min", "median", "max"} <= set(figure):
            raise ValueError(f"figure {name!r} is not a min/median/max summary")
    for key in ("cores", "load_average"):
        if key not in doc["machine"]:
            raise ValueError(f"machine lacks {key}")
