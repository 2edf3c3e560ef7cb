"""Deploy history per environment, from the build database the way `steps/deploy/history.py` reads it.

The deploy and rollback builds of an environment (builders tagged ["deploy", <env>]) are its
history: their properties say which revision each one deployed (`deploy_revision`), Render's
deploy id, what failed and where an automatic rollback went. From them:
- what is live now: the newest build that changed the environment, read newest first — a
  SUCCESS (or WARNINGS: live and verified, a notification or an override warned) deploy or
  rollback, or a failed deploy whose automatic rollback came back healthy; a failed one that
  changed the environment without a healthy rollback leaves it unknown, and says so;
- what a forced rollback would go back to: the newest SUCCESS build of another revision
  (`deploy_history.previous_good`, the rollback builder's own choice).
Two rounds: the builders, then per environment its recent deploy and rollback builds and their
newest SUCCESS builds (4 data-API calls per environment). No HTML here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from buildbot.process.results import CANCELLED, SKIPPED, SUCCESS, WARNINGS

from namaskah_ci import names
from namaskah_ci.dashboard.data import Build, Builder, DataSource, Query, index_builders, to_build
from namaskah_ci.names import (
    PROP_DEPLOY_ID,
    PROP_FAILURE,
    PROP_GATE_OVERRIDE,
    PROP_GATE_PIPELINE,
    PROP_NOT_CONFIGURED,
    PROP_REVISION,
    PROP_ROLLBACK_DEPLOY_ID,
    PROP_ROLLBACK_HEALTH,
    PROP_ROLLBACK_RESULT,
    PROP_ROLLED_BACK_TO,
    PROP_STARTED,
)
from namaskah_ci.text import same_revision, short

HISTORY_PROPS = (
    PROP_REVISION,
    PROP_DEPLOY_ID,
    PROP_FAILURE,
    PROP_STARTED,
    PROP_ROLLED_BACK_TO,
    PROP_ROLLBACK_DEPLOY_ID,
    PROP_ROLLBACK_RESULT,
    PROP_ROLLBACK_HEALTH,
    PROP_GATE_PIPELINE,
    PROP_GATE_OVERRIDE,
    PROP_NOT_CONFIGURED,
    "owner",
    "reason",
    "scheduler",
)
LIVE = (SUCCESS, WARNINGS)


@dataclasses.dataclass(frozen=True)
class DeployEntry:
    kind: str  # "deploy" or "rollback"
    build: Build
    revision: str | None
    deploy_id: str | None
    who: str
    reason: str
    verification: str
    gate_pipeline: int | None = None  # the number of the pipeline build whose gate asked for it


@dataclasses.dataclass(frozen=True)
class LiveState:
    revision: str | None
    since: float | None
    by: str
    entry: DeployEntry | None
    deploy_id: str | None = None
    note: str = ""


@dataclasses.dataclass(frozen=True)
class EnvironmentHistory:
    environment: str
    branch: str
    live: LiveState
    entries: tuple[DeployEntry, ...]  # newest first, running ones included
    rollback_target: DeployEntry | None
    deploy_builderid: int | None = None
    rollback_builderid: int | None = None


@dataclasses.dataclass(frozen=True)
class DeployHistory:
    environments: tuple[EnvironmentHistory, ...]
    pipeline_builderid: int | None = None  # to link "deploy gate of pipeline #12"


def gate_pipeline_number(text: str | None) -> int | None:
    """`pipeline #12` (the gate's property) -> 12."""
    if not text or "#" not in str(text):
        return None
    tail = str(text).rsplit("#", 1)[1].strip()
    return int(tail) if tail.isdigit() else None


def who_deployed(build: Build) -> str:
    gate = build.prop(PROP_GATE_PIPELINE)
    if gate:
        return f"deploy gate of {gate}"
    owner = build.prop("owner")
    if owner:
        return f"{owner} (forced" + (", gate overridden)" if build.prop(PROP_GATE_OVERRIDE) else ")")
    scheduler = build.prop("scheduler")
    return str(scheduler) if scheduler else "unknown"


def verification(build: Build, kind: str) -> str:
    """How the build's checks of the environment ended, in a few words."""
    if not build.complete:
        return "running"
    if build.results == SKIPPED:
        return str(build.prop(PROP_NOT_CONFIGURED) or "skipped")
    if build.results == CANCELLED:
        return "cancelled"
    if build.results in LIVE:
        return "live, healthy, smoke tests passed"
    failure = str(build.prop(PROP_FAILURE) or build.result_name)
    if not build.prop(PROP_STARTED) and not build.prop(PROP_ROLLED_BACK_TO):
        return f"not deployed: {failure}"
    if kind == "rollback":
        return failure
    target = build.prop(PROP_ROLLED_BACK_TO)
    if target:
        return f"{failure}; rolled back to {short(target)} ({build.prop(PROP_ROLLBACK_HEALTH) or 'health unknown'})"
    return f"{failure}; {build.prop(PROP_ROLLBACK_RESULT) or 'not rolled back'}"


def to_entry(build: Build, kind: str) -> DeployEntry:
    return DeployEntry(
        kind=kind,
        build=build,
        revision=build.prop(PROP_REVISION),
        deploy_id=build.prop(PROP_DEPLOY_ID),
        who=who_deployed(build),
        reason=str(build.prop("reason") or ""),
        verification=verification(build, kind),
        gate_pipeline=gate_pipeline_number(build.prop(PROP_GATE_PIPELINE)),
    )


def _finished_newest_first(entries: Sequence[DeployEntry]) -> list[DeployEntry]:
    done = [e for e in entries if e.build.complete]
    return sorted(done, key=lambda e: (e.build.complete_at or 0.0, e.build.buildid), reverse=True)


def live_state(entries: Sequence[DeployEntry], good: Sequence[DeployEntry] = ()) -> LiveState:
    """What the environment runs now (see the module docstring); `good`: newest SUCCESS builds,
    the fallback when none of `entries` changed the environment."""
    for entry in _finished_newest_first(entries):
        build = entry.build
        if build.results in LIVE and entry.revision:
            return LiveState(entry.revision, build.complete_at, entry.who, entry, entry.deploy_id)
        changed = build.prop(PROP_STARTED) or build.prop(PROP_ROLLED_BACK_TO)
        if not changed:
            continue  # it never touched the environment: what was live before still is
        target = build.prop(PROP_ROLLED_BACK_TO)
        label = f"{build.builder} #{build.number}"
        if entry.kind == "deploy" and target and build.prop(PROP_ROLLBACK_HEALTH) == "healthy":
            deploy_id = build.prop(PROP_ROLLBACK_DEPLOY_ID)
            return LiveState(target, build.complete_at, f"automatic rollback in {label}", entry, deploy_id)
        return LiveState(
            None,
            build.complete_at,
            "",
            entry,
            note=f"{label} changed the environment and did not end healthy: what is live is unknown",
        )
    if good:
        newest = _finished_newest_first(good)[0]
        return LiveState(newest.revision, newest.build.complete_at, newest.who, newest, newest.deploy_id)
    return LiveState(None, None, "", None, note="nothing deployed yet")


def rollback_target(good: Sequence[DeployEntry]) -> DeployEntry | None:
    """`deploy_history.previous_good` over the newest SUCCESS builds."""
    records = [e for e in _finished_newest_first(good) if e.revision and e.build.results == SUCCESS]
    if not records:
        return None
    return next((e for e in records[1:] if not same_revision(e.revision, records[0].revision)), None)


def environments_of(builders: dict[int, Builder], configured: Sequence[str]) -> list[str]:
    found = list(configured)
    for builder in sorted(builders.values(), key=lambda b: b.name):
        if builder.environment and builder.environment not in found:
            found.append(builder.environment)
    return found


def load_deploy_history(
    source: DataSource, environments: Sequence[str], branches: dict[str, str] | None = None, limit: int = 30
) -> DeployHistory:
    """`environments`: the configured ones, in order (others with deploy builders follow)."""
    (builders_raw,) = source.fetch([Query(("builders",))])
    builders = index_builders(builders_raw)
    by_name = {b.name: b for b in builders.values()}
    envs = environments_of(builders, environments)
    queries = []
    for env in envs:
        for builder in (names.deploy_builder_name(env), names.rollback_builder_name(env)):
            queries.append(
                Query(("builders", builder, "builds"), order=("-number",), limit=limit, properties=HISTORY_PROPS)
            )
            queries.append(
                Query(
                    ("builders", builder, "builds"),
                    filters=(("complete", "eq", (True,)), ("results", "eq", (SUCCESS,))),
                    order=("-complete_at",),
                    limit=5,
                    properties=HISTORY_PROPS,
                )
            )
    answers = source.fetch(queries)
    result = []
    for i, env in enumerate(envs):
        recent, good = [], []
        for j, kind in enumerate(("deploy", "rollback")):
            base = 4 * i + 2 * j
            recent += [to_entry(to_build(raw, builders), kind) for raw in answers[base] or []]
            good += [to_entry(to_build(raw, builders), kind) for raw in answers[base + 1] or []]
        recent.sort(key=lambda e: (e.build.started_at or 0.0, e.build.buildid), reverse=True)
        deploy_builder = by_name.get(names.deploy_builder_name(env))
        rollback_builder = by_name.get(names.rollback_builder_name(env))
        result.append(
            EnvironmentHistory(
                environment=env,
                branch=(branches or {}).get(env, ""),
                live=live_state(recent, good),
                entries=tuple(recent[:limit]),
                rollback_target=rollback_target(good),
                deploy_builderid=deploy_builder.builderid if deploy_builder else None,
                rollback_builderid=rollback_builder.builderid if rollback_builder else None,
            )
        )
    pipeline = by_name.get(names.PIPELINE)
    return DeployHistory(tuple(result), pipeline.builderid if pipeline else None)
