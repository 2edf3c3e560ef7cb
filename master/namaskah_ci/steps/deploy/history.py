"""The deploy history is the Buildbot database: queries over past builds, and queue superseding.

- `good_deploys`: the SUCCESS builds of an environment's deploy and rollback
  builders, newest first, each with the revision it left live and its Render
  deploy id (build properties `deploy_revision`, `render_deploy_id`). The first
  is what production runs now; `previous_good` is the one before it.
- `find_pipeline_build`: the newest `pipeline` build of a revision and its
  `check_results`, for a forced deploy's gate.
- `newest_branch_revision`: the newest change the master has seen on a branch.
- `supersede_queued`: a builder `nextBuild` that starts the newest queued
  request first (the older ones then skip themselves, naming it).

Everything goes through the data API / DB connector (asynchronous), never the
reactor-blocking way.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Generator, Iterable
from typing import Any

from buildbot.data import resultspec
from twisted.internet import defer

from namaskah_ci import names
from namaskah_ci.names import PROP_DEPLOY_ID, PROP_REVISION
from namaskah_ci.steps.results import SUCCESS
from namaskah_ci.text import same_revision


@dataclasses.dataclass(frozen=True)
class DeployRecord:
    """A good deploy: what a SUCCESS deploy or rollback build left live."""

    builder: str
    number: int
    buildid: int
    revision: str
    deploy_id: str | None
    complete_at: datetime.datetime | None

    @property
    def label(self) -> str:
        return f"{self.builder} #{self.number}"


@dataclasses.dataclass(frozen=True)
class PipelineRecord:
    number: int
    buildid: int
    revision: str
    complete: bool
    check_results: dict[str, str]
    defined: list[str] | None = None  # the verdict jobs its pipeline file defined for its branch (None: unknown)
    origin: str = ""


def _sort_key(record: DeployRecord) -> tuple[float, int]:
    stamp = record.complete_at.timestamp() if record.complete_at else 0.0
    return (stamp, record.buildid)


@defer.inlineCallbacks
def good_deploys(master: Any, builder_names: Iterable[str], limit: int = 20) -> Generator[Any, Any, list[DeployRecord]]:
    """Good deploys of the named builders, newest first."""
    records: list[DeployRecord] = []
    for name in builder_names:
        builds = yield master.data.get(
            ("builders", name, "builds"),
            filters=[
                resultspec.Filter("complete", "eq", [True]),
                resultspec.Filter("results", "eq", [SUCCESS]),
            ],
            order=["-complete_at"],
            limit=limit,
        )
        for build in builds or []:
            props = yield master.db.builds.getBuildProperties(build["buildid"])
            revision = props.get(PROP_REVISION, (None, None))[0]
            if not revision:
                continue
            records.append(
                DeployRecord(
                    builder=name,
                    number=build["number"],
                    buildid=build["buildid"],
                    revision=revision,
                    deploy_id=props.get(PROP_DEPLOY_ID, (None, None))[0],
                    complete_at=build["complete_at"],
                )
            )
    return sorted(records, key=_sort_key, reverse=True)


def previous_good(records: list[DeployRecord]) -> DeployRecord | None:
    """The newest good deploy of a different revision than the current (newest) one."""
    if not records:
        return None
    current = records[0]
    for record in records[1:]:
        if not same_revision(record.revision, current.revision):
            return record
    return None


def find_revision(records: list[DeployRecord], revision: str) -> DeployRecord | None:
    for record in records:
        if same_revision(record.revision, revision):
            return record
    return None


@defer.inlineCallbacks
def find_pipeline_build(master: Any, revision: str, scan: int = 200) -> Generator[Any, Any, PipelineRecord | None]:
    """The newest pipeline build of `revision` (complete or not), or None; a pull request's pipeline
    never counts (pull requests never deploy, not even by a forced deploy of their merge result)."""
    builds = yield master.data.get(("builders", names.PIPELINE, "builds"), order=["-number"], limit=scan)
    for build in builds or []:
        props = yield master.db.builds.getBuildProperties(build["buildid"])
        built = props.get("revision", (None, None))[0]
        if same_revision(built, revision) and not props.get(names.PROP_PR_NUMBER, (None, None))[0]:
            return PipelineRecord(
                number=build["number"],
                buildid=build["buildid"],
                revision=built,
                complete=bool(build["complete"]),
                check_results=props.get(names.PROP_CHECK_RESULTS, ({}, None))[0] or {},
                defined=props.get(names.PROP_PIPELINE_JOBS, (None, None))[0],
                origin=props.get(names.PROP_PIPELINE_FILE, ("", None))[0] or "",
            )
    return None


@defer.inlineCallbacks
def newest_branch_revision(master: Any, branch: str) -> Generator[Any, Any, str | None]:
    """The revision of the newest change seen on `branch`, or None."""
    changes = yield master.data.get(
        ("changes",),
        filters=[resultspec.Filter("branch", "eq", [branch])],
        order=["-changeid"],
        limit=1,
    )
    for change in changes or []:
        revision: str | None = change.get("revision")
        if revision:
            return revision
    return None


def _submitted(request: Any) -> float:
    stamp = getattr(request, "submittedAt", None)
    if isinstance(stamp, datetime.datetime):
        return stamp.timestamp()
    return float(stamp or 0)


def supersede_queued(builder: Any, requests: list[Any]) -> Any:
    """`nextBuild`: the newest queued request first. The older ones still run, after it, and their
    first steps skip them naming the newer revision (steps/start_deploy.NotOutdated), so an older
    revision is never deployed after a newer one and every skipped request says why."""
    if not requests:
        return None
    return sorted(requests, key=lambda r: (_submitted(r), r.id))[-1]
