"""Trends over the last N pipelines: wall time, per-job duration, coverage, failure rate, push → live.

At most three rounds of data-API reads: the builders and the last N `pipeline` builds; then their
triggered builds (one read per pipeline), properties and build requests (`submitted_at`: when the
master learnt of the push); then the `coverage` property of finished job builds. What finished
builds say never changes, so it is kept in the dashboards' `FinishedCache` (a pipeline's triggered
builds once everything in it finished more than an hour ago): a page seen before costs little
more than its first round. No HTML here; `dashboard_views` turns a `Trends` into charts.

Definitions: a job counts with its last attempt in each pipeline, when that attempt ended SUCCESS,
WARNINGS, FAILURE or EXCEPTION (a cancelled or skipped run says nothing about the code or its
speed); its failure rate is FAILURE or EXCEPTION over those runs; push → live is from the
pipeline's build request to the end of the deploy build its gate triggered, for deploys that went
live (SUCCESS or WARNINGS).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Any

from buildbot.process.results import EXCEPTION, FAILURE, SUCCESS, WARNINGS

from namaskah_ci import names
from namaskah_ci.dashboard.data import Build, Builder, DataSource, FinishedCache, Query, index_builders, to_build
from namaskah_ci.dashboard.pipelines import PIPELINE_PROPS
from namaskah_ci.text import epoch, short

MAX_PIPELINES = 100
SETTLED_SECONDS = 3600
COUNTED = (SUCCESS, WARNINGS, FAILURE, EXCEPTION)
FAILED = (FAILURE, EXCEPTION)


@dataclasses.dataclass(frozen=True)
class PushToLive:
    label: str
    title: str
    seconds: float
    environment: str
    route: str


@dataclasses.dataclass(frozen=True)
class Trends:
    pipelines: tuple[Build, ...]  # oldest first
    labels: tuple[str, ...]  # "#12", one per pipeline
    titles: tuple[str, ...]  # "pipeline #12 (main 1a2b3c4)"
    wall: tuple[float | None, ...]
    job_durations: dict[str, tuple[float | None, ...]]  # builder -> one value per pipeline
    coverage: dict[str, tuple[float | None, ...]]
    failure_rates: tuple[tuple[str, int, int], ...]  # (builder, failures, runs), worst first
    push_to_live: tuple[PushToLive, ...]


def last_attempts(children: Sequence[Build]) -> dict[str, Build]:
    newest: dict[str, Build] = {}
    for child in children:
        if child.builder not in newest or child.buildid > newest[child.builder].buildid:
            newest[child.builder] = child
    return newest


def shape_trends(
    pipelines: Sequence[Build],
    children: dict[int, list[Build]],
    coverage: dict[int, float],
    submitted: dict[int, float],
    deploy_builders: set[int],
) -> Trends:
    """Pure: the series of the charts from the builds (pipelines in any order)."""
    ordered = sorted(pipelines, key=lambda b: b.number)
    labels = tuple(f"#{p.number}" for p in ordered)
    titles = tuple(f"pipeline #{p.number} ({p.prop('branch') or '?'} {short(p.prop('revision'))})" for p in ordered)
    durations: dict[str, list[float | None]] = {}
    percents: dict[str, list[float | None]] = {}
    counts: dict[str, list[int]] = {}
    to_live = []
    for index, pipeline in enumerate(ordered):
        jobs = last_attempts([c for c in children.get(pipeline.buildid, []) if c.builderid not in deploy_builders])
        for name, build in jobs.items():
            if build.complete and build.results in COUNTED:  # a cancelled run's time says little
                durations.setdefault(name, [None] * len(ordered))[index] = build.duration()
            if build.buildid in coverage:
                percents.setdefault(name, [None] * len(ordered))[index] = coverage[build.buildid]
            if build.complete and build.results in COUNTED:
                tally = counts.setdefault(name, [0, 0])
                tally[0] += build.results in FAILED
                tally[1] += 1
        deploys = [c for c in children.get(pipeline.buildid, []) if c.builderid in deploy_builders]
        start = submitted.get(pipeline.buildid, pipeline.started_at)
        for deploy in deploys:
            if deploy.complete and deploy.results in (SUCCESS, WARNINGS) and start is not None:
                environment = deploy.builder.split("-", 1)[-1]
                seconds = max(0.0, (deploy.complete_at or start) - start)
                to_live.append(PushToLive(labels[index], titles[index], seconds, environment, deploy.route))
    rates = sorted(
        ((name, failed, runs) for name, (failed, runs) in counts.items()),
        key=lambda item: (-(item[1] / item[2]), item[0]),
    )
    return Trends(
        pipelines=tuple(ordered),
        labels=labels,
        titles=titles,
        wall=tuple(p.duration() if p.complete else None for p in ordered),
        job_durations={name: tuple(values) for name, values in sorted(durations.items())},
        coverage={name: tuple(values) for name, values in sorted(percents.items())},
        failure_rates=tuple(rates),
        push_to_live=tuple(to_live),
    )


def load_trends(
    source: DataSource, last: int = 30, cache: FinishedCache | None = None, now: float | None = None
) -> Trends:
    last = max(1, min(MAX_PIPELINES, last))
    cache = cache if cache is not None else FinishedCache()
    now = time.time() if now is None else now
    builders_raw, pipelines_raw = source.fetch(
        [Query(("builders",)), Query(("builders", names.PIPELINE, "builds"), order=("-number",), limit=last)]
    )
    builders = index_builders(builders_raw)
    deploy_builders = {b.builderid for b in builders.values() if b.environment}
    pipelines = [to_build(raw, builders) for raw in pipelines_raw or []]
    children, props, submitted = _second_round(source, builders, pipelines, cache, now)
    pipelines = [dataclasses.replace(p, properties=props.get(p.buildid, {})) for p in pipelines]
    finished_jobs = [
        c.buildid for group in children.values() for c in group if c.complete and c.builderid not in deploy_builders
    ]
    unknown = tuple(buildid for buildid in finished_jobs if ("coverage", buildid) not in cache)
    if unknown:
        (found,) = source.fetch(
            [Query(("builds",), filters=(("buildid", "in", unknown),), properties=(names.PROP_COVERAGE,))]
        )
        values = {raw["buildid"]: to_build(raw, builders).prop(names.PROP_COVERAGE) for raw in found or []}
        for buildid in unknown:
            value = values.get(buildid)
            cache.put(("coverage", buildid), float(value) if isinstance(value, (int, float)) else None)
    coverage = {b: cache.get(("coverage", b)) for b in finished_jobs if cache.get(("coverage", b)) is not None}
    return shape_trends(pipelines, children, coverage, submitted, deploy_builders)


def _second_round(
    source: DataSource, builders: dict[int, Builder], pipelines: list[Build], cache: FinishedCache, now: float
) -> tuple[dict[int, list[Build]], dict[int, dict[str, Any]], dict[int, float]]:
    """({pipeline: its triggered builds}, {pipeline: properties}, {pipeline: request submitted at}).

    A pipeline's triggered builds are kept once it and all of them finished more than
    SETTLED_SECONDS ago (a deploy queued behind another one starts later than that only rarely, and
    a trend chart can live with it); the pipeline page always reads them again."""
    need_children = [p for p in pipelines if ("children", p.buildid) not in cache]
    need_props = [p for p in pipelines if ("props", p.buildid) not in cache]
    requests = tuple(p.buildrequestid for p in pipelines if ("submitted", p.buildid) not in cache and p.buildrequestid)
    queries = [Query(("builds", str(p.buildid), "triggered_builds")) for p in need_children]
    if need_props:
        ids = tuple(p.buildid for p in need_props)
        queries.append(Query(("builds",), filters=(("buildid", "in", ids),), properties=PIPELINE_PROPS))
    if requests:
        queries.append(Query(("buildrequests",), filters=(("buildrequestid", "in", requests),)))
    answers = source.fetch(queries)
    children = {p.buildid: cache.get(("children", p.buildid)) for p in pipelines}
    for pipeline, found in zip(need_children, answers, strict=False):
        group = [to_build(raw, builders) for raw in found or []]
        children[pipeline.buildid] = group
        settled = pipeline.complete and now - (pipeline.complete_at or now) > SETTLED_SECONDS
        if settled and all(c.complete for c in group):
            cache.put(("children", pipeline.buildid), group)
    rest = answers[len(need_children) :]
    fetched: dict[int, dict[str, Any]] = {}
    if need_props:
        fetched = {raw["buildid"]: to_build(raw, builders).properties for raw in rest[0] or []}
        for pipeline in need_props:
            cache.remember(pipeline, "props", fetched.get(pipeline.buildid, {}))
        rest = rest[1:]
    if requests:
        stamps = {r["buildrequestid"]: epoch(r.get("submitted_at")) for r in rest[0] or []}
        for pipeline in pipelines:
            if pipeline.buildrequestid in stamps:
                cache.put(("submitted", pipeline.buildid), stamps[pipeline.buildrequestid])
    props = {
        p.buildid: fetched[p.buildid] if p.buildid in fetched else cache.get(("props", p.buildid), {})
        for p in pipelines
    }
    submitted = {p.buildid: cache.get(("submitted", p.buildid)) for p in pipelines}
    return children, props, {k: v for k, v in submitted.items() if v is not None}
