"""The pipeline dashboard's data: one row per branch and revision, one cell per job (no HTML here).

A page of N pipeline builds costs three rounds of data-API reads (`dashboard_data.BuildbotData`),
whatever the size of the database:
1. the builders (names, tags) and one page of `pipeline` builds with their properties
   (`revision`, `branch`, `check_results`, `pipeline_jobs`, ...);
2. per pipeline: its triggered builds (the jobs and the deploy) and its steps (the deploy gate's
   summary);
3. the steps of each failed job build (its first FAILURE step) and, in one read, the deploy
   builds' properties (`deploy_revision`, `render_deploy_id`).
That is at most 2 + 2N + (failed cells) + 1 reads, each an indexed query.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from namaskah_ci import names
from namaskah_ci.dashboard.data import (
    FAILED,
    Build,
    Builder,
    DataSource,
    FinishedCache,
    Query,
    first_failing_step,
    gate_summary,
    index_builders,
    to_build,
)
from namaskah_ci.names import PROP_DEPLOY_ID, PROP_ENVIRONMENT, PROP_REVISION

ANALYSIS_TAG = "analysis"
PIPELINE_PROPS = (
    "revision",
    "branch",
    names.PROP_CHECK_RESULTS,
    names.PROP_PIPELINE_JOBS,
    names.PROP_PIPELINE_FILE,
    names.PROP_PIPELINE_ERROR,
)
DEPLOY_PROPS = (PROP_REVISION, PROP_DEPLOY_ID, PROP_ENVIRONMENT)


@dataclasses.dataclass(frozen=True)
class JobCell:
    """One job of one pipeline: its newest build (retries: the last attempt), or why there is none."""

    builder: str
    state: str  # a result name, "running", "pending", "not run", or "absent" (not in this pipeline)
    build: Build | None = None
    failing_step: str | None = None
    attempts: int = 0


@dataclasses.dataclass(frozen=True)
class DeployCell:
    environment: str
    build: Build
    revision: str | None
    deploy_id: str | None


@dataclasses.dataclass(frozen=True)
class Column:
    builder: str
    kind: str  # "check" or "analysis"
    required: bool


@dataclasses.dataclass(frozen=True)
class PipelineRow:
    pipeline: Build
    revision: str
    branch: str
    cells: dict[str, JobCell]
    gate: str
    deploys: tuple[DeployCell, ...]
    error: str = ""
    origin: str = ""
    earlier: tuple[Build, ...] = ()  # older pipeline builds of the same branch and revision on this page


@dataclasses.dataclass(frozen=True)
class PipelinePage:
    rows: tuple[PipelineRow, ...]
    columns: tuple[Column, ...]
    page: int
    per_page: int
    total: int | None  # pipeline builds in all

    @property
    def has_next(self) -> bool:
        if self.total is not None:
            return self.page * self.per_page < self.total
        return len(self.rows) >= self.per_page

    @property
    def pages(self) -> int | None:
        return None if self.total is None else max(1, -(-self.total // self.per_page))


def job_cell(
    builder: str,
    builds: list[Build],
    failing: dict[int, str],
    listed: bool,
    check_results: dict[str, Any],
    finished: bool,
) -> JobCell:
    """`listed`: the pipeline's file defines the job for the branch; `finished`: the pipeline ended."""
    if builds:
        newest = max(builds, key=lambda b: b.buildid)
        return JobCell(builder, newest.result_name, newest, failing.get(newest.buildid), len(builds))
    if builder in check_results:  # cancelled before a build started
        return JobCell(builder, str(check_results[builder]))
    if listed:
        return JobCell(builder, "not run" if finished else "pending")
    return JobCell(builder, "absent")


def shape_rows(
    pipelines: Sequence[Build],
    children: dict[int, list[Build]],
    gates: dict[int, str],
    failing: dict[int, str],
    deploy_props: dict[int, dict[str, Any]],
    builders: dict[int, Builder],
) -> list[PipelineRow]:
    """One row per branch and revision (the newest pipeline build of it), newest first."""
    rows: list[PipelineRow] = []
    seen: dict[tuple[str, str], int] = {}
    for pipeline in sorted(pipelines, key=lambda b: b.number, reverse=True):
        revision = pipeline.prop("revision") or ""
        branch = pipeline.prop("branch") or ""
        key = (branch, revision)
        if revision and key in seen:
            index = seen[key]
            rows[index] = dataclasses.replace(rows[index], earlier=(*rows[index].earlier, pipeline))
            continue
        jobs: dict[str, list[Build]] = {}
        deploys = []
        for child in children.get(pipeline.buildid, []):
            environment = builders[child.builderid].environment if child.builderid in builders else None
            if environment:
                props = deploy_props.get(child.buildid, {})
                deploys.append(
                    DeployCell(
                        environment=props.get(PROP_ENVIRONMENT) or environment,
                        build=child,
                        revision=props.get(PROP_REVISION),
                        deploy_id=props.get(PROP_DEPLOY_ID),
                    )
                )
            else:
                jobs.setdefault(child.builder, []).append(child)
        listed = list(pipeline.prop(names.PROP_PIPELINE_JOBS) or [])
        check_results = pipeline.prop(names.PROP_CHECK_RESULTS) or {}
        cells = {
            name: job_cell(name, jobs.get(name, []), failing, name in listed, check_results, pipeline.complete)
            for name in [*listed, *sorted((set(jobs) | set(check_results)) - set(listed))]
        }
        if revision:
            seen[key] = len(rows)
        rows.append(
            PipelineRow(
                pipeline=pipeline,
                revision=revision,
                branch=branch,
                cells=cells,
                gate=gates.get(pipeline.buildid, ""),
                deploys=tuple(sorted(deploys, key=lambda d: d.build.buildid, reverse=True)),
                error=pipeline.prop(names.PROP_PIPELINE_ERROR) or "",
                origin=pipeline.prop(names.PROP_PIPELINE_FILE) or "",
            )
        )
    return rows


def shape_columns(rows: Sequence[PipelineRow], builders: dict[int, Builder], required: Sequence[str]) -> list[Column]:
    """The union of the rows' jobs: in the newest pipeline's order, then jobs only older ones ran. Marked
    required: `[checks] required`, or when it is empty (the default) every job of the verdict, as the
    deploy gate then requires the pipeline file's verdict jobs (steps/deploy/gate.py)."""
    tags = {b.name: b.tags for b in builders.values()}
    order: list[str] = []
    for row in rows:
        for name in row.cells:
            if name not in order:
                order.append(name)
    checks = [n for n in order if ANALYSIS_TAG not in tags.get(n, ())]
    analysis = [n for n in order if ANALYSIS_TAG in tags.get(n, ())]
    gated = set(required) if required else set(checks)
    return [Column(n, "check", n in gated) for n in checks] + [Column(n, "analysis", False) for n in analysis]


def load_pipeline_page(
    source: DataSource,
    page: int = 1,
    per_page: int = 25,
    required: Sequence[str] = (),
    cache: FinishedCache | None = None,
) -> PipelinePage:
    """One page of the dashboard, newest pipelines first. `cache` keeps what finished builds say
    (pipeline properties, gate summaries, failing steps, deploy properties) between requests; a
    pipeline's triggered builds are always read again (a queued deploy can start much later)."""
    cache = cache if cache is not None else FinishedCache()
    page = max(1, page)
    builders_raw, pipelines_raw = source.fetch(
        [
            Query(("builders",)),
            Query(
                ("builders", names.PIPELINE, "builds"),
                order=("-number",),
                limit=per_page,
                offset=(page - 1) * per_page,
            ),
        ]
    )
    builders = index_builders(builders_raw)
    pipelines = [to_build(raw, builders) for raw in pipelines_raw or []]
    # the data API does not count a builder's builds, but their numbers are consecutive
    total = pipelines[0].number + (page - 1) * per_page if pipelines else None
    need_props = [p for p in pipelines if ("props", p.buildid) not in cache]
    need_gate = [p for p in pipelines if ("gate", p.buildid) not in cache]
    second = [Query(("builds", str(p.buildid), "triggered_builds")) for p in pipelines]
    second += [Query(("builds", str(p.buildid), "steps")) for p in need_gate]
    if need_props:
        ids = tuple(p.buildid for p in need_props)
        second.append(Query(("builds",), filters=(("buildid", "in", ids),), properties=PIPELINE_PROPS))
    answers = source.fetch(second)
    count = len(pipelines)
    children = {p.buildid: [to_build(raw, builders) for raw in answers[i] or []] for i, p in enumerate(pipelines)}
    gates = {p.buildid: cache.get(("gate", p.buildid), "") for p in pipelines}
    for pipeline, found in zip(need_gate, answers[count : count + len(need_gate)], strict=False):
        gates[pipeline.buildid] = gate_summary(found or [])
        cache.remember(pipeline, "gate", gates[pipeline.buildid])
    props = {p.buildid: cache.get(("props", p.buildid), {}) for p in pipelines}
    if need_props:
        fetched = {raw["buildid"]: to_build(raw, builders).properties for raw in answers[-1] or []}
        for pipeline in need_props:
            props[pipeline.buildid] = fetched.get(pipeline.buildid, {})
            cache.remember(pipeline, "props", props[pipeline.buildid])
    pipelines = [dataclasses.replace(p, properties=props[p.buildid]) for p in pipelines]
    failing, deploy_props = _third_round(source, builders, children, cache)
    rows = shape_rows(pipelines, children, gates, failing, deploy_props, builders)
    return PipelinePage(
        rows=tuple(rows),
        columns=tuple(shape_columns(rows, builders, required)),
        page=page,
        per_page=per_page,
        total=total,
    )


def _third_round(
    source: DataSource, builders: dict[int, Builder], children: dict[int, list[Build]], cache: FinishedCache
) -> tuple[dict[int, str], dict[int, dict[str, Any]]]:
    """The first failing step of each failed job build and the deploy builds' properties."""
    every = [child for group in children.values() for child in group]
    deploys = [c for c in every if builders.get(c.builderid) and builders[c.builderid].environment]
    deploy_ids = {c.buildid for c in deploys}
    jobs = [c for c in every if c.buildid not in deploy_ids]
    failed = [c for c in jobs if c.results in FAILED and ("failing", c.buildid) not in cache]
    unknown = [c for c in deploys if ("deploy", c.buildid) not in cache]
    third = [Query(("builds", str(build.buildid), "steps")) for build in failed]
    if unknown:
        ids = tuple(c.buildid for c in unknown)
        third.append(Query(("builds",), filters=(("buildid", "in", ids),), properties=DEPLOY_PROPS))
    answers = source.fetch(third)
    for build, found in zip(failed, answers, strict=False):
        cache.remember(build, "failing", first_failing_step(found or []))
    fresh: dict[int, dict[str, Any]] = {}
    if unknown:
        fresh = {raw["buildid"]: to_build(raw, builders).properties for raw in answers[-1] or []}
        for build in unknown:
            cache.remember(build, "deploy", fresh.get(build.buildid, {}))
    failing = {c.buildid: cache.get(("failing", c.buildid)) for c in jobs if c.results in FAILED}
    deploy_props = {c.buildid: fresh.get(c.buildid, cache.get(("deploy", c.buildid), {})) for c in deploys}
    return {k: v for k, v in failing.items() if v}, deploy_props
