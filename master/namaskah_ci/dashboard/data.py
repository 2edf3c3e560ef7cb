"""Reading the master's data API from a dashboard page, and what a build is for the pages.

The dashboards run in the web server's thread pool (`buildbot-wsgi-dashboards`), never in the
reactor. `BuildbotData.fetch` is the plugin's `dataGet` batched: the queries of one *round* go
into the reactor in a single trip and run there side by side (`master.data.get`, the data API the
REST API serves), and a query may ask for build properties the way REST's `?property=` does
(`dataGet`'s signature cannot). Pages cost a fixed number of rounds (see `dashboard_pipelines`,
`dashboard_deploys`, `dashboard_trends`); the shaping code is pure, and tests feed it fake
data-API answers through any object with a `fetch(queries)` method.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from buildbot.process.results import EXCEPTION, FAILURE, Results

from namaskah_ci.text import epoch

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred

GATE_STEP = "deploy gate"
DEPLOY_TAG = "deploy"
FAILED = (FAILURE, EXCEPTION)
Record = dict[str, Any]  # one resource as the data API answers it (a build, a step, a builder...)
CacheKey = tuple[str, int]  # (what, buildid)


# --- reading the data API ----------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Query:
    """One data-API read: a path and a result spec (filters are (field, op, values) triples)."""

    path: tuple[str, ...]
    filters: tuple[tuple[str, str, tuple[Any, ...]], ...] = ()
    order: tuple[str, ...] = ()
    limit: int | None = None
    offset: int | None = None
    properties: tuple[str, ...] = ()

    def result_spec(self) -> Any:
        from buildbot.data import resultspec

        return resultspec.ResultSpec(
            filters=[resultspec.Filter(field, op, list(values)) for field, op, values in self.filters],
            properties=[resultspec.Property(b"property", "eq", list(self.properties))] if self.properties else [],
            order=list(self.order) or None,
            limit=self.limit,
            offset=self.offset,
        )


class DataSource(Protocol):
    """One answer per query: a list of records, one record, or None (nothing at that path)."""

    def fetch(self, queries: Sequence[Query]) -> list[Any]: ...


class BuildbotData:
    """The data API of the master serving the page, from a web-server thread: one reactor trip per round."""

    def __init__(self, buildbot_api: Any):
        self.api = buildbot_api

    def fetch(self, queries: Sequence[Query]) -> list[Any]:
        if not queries:
            return []
        from twisted.internet import defer, reactor
        from twisted.internet.threads import blockingCallFromThread

        data = self.api.master.data

        def run() -> Deferred[list[Any]]:
            reads = [data.get_with_resultspec(query.path, query.result_spec()) for query in queries]
            gathered = defer.gatherResults(reads, consumeErrors=True)
            return gathered.addErrback(lambda failure: getattr(failure.value, "subFailure", failure))

        answers: list[Any] = blockingCallFromThread(reactor, run)  # type: ignore[no-untyped-call]  # Twisted leaves it unannotated
        return answers


class FinishedCache:
    """What the pages read about finished builds (properties, steps), which never changes again:
    a bounded map shared by the dashboards and their requests (oldest entries dropped first)."""

    def __init__(self, size: int = 20000):
        self.size = size
        self._values: collections.OrderedDict[CacheKey, Any] = collections.OrderedDict()
        self._lock = threading.Lock()

    def __contains__(self, key: CacheKey) -> bool:
        with self._lock:
            return key in self._values

    def get(self, key: CacheKey, default: Any = None) -> Any:
        with self._lock:
            return self._values.get(key, default)

    def put(self, key: CacheKey, value: Any) -> None:
        with self._lock:
            self._values[key] = value
            while len(self._values) > self.size:
                self._values.popitem(last=False)

    def remember(self, build: Build, kind: str, value: Any) -> None:
        """Keep `value` only when `build` had finished when it was read."""
        if build.complete:
            self.put((kind, build.buildid), value)


# --- what a build is, for the pages ------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Builder:
    builderid: int
    name: str
    tags: tuple[str, ...] = ()

    @property
    def environment(self) -> str | None:
        """The environment of a deploy or rollback builder (tags ["deploy", <env>])."""
        if DEPLOY_TAG not in self.tags:
            return None
        others = [tag for tag in self.tags if tag != DEPLOY_TAG]
        return others[0] if others else self.name.split("-", 1)[-1]


@dataclasses.dataclass(frozen=True)
class Build:
    buildid: int
    builderid: int
    builder: str
    number: int
    results: int | None
    started_at: float | None
    complete_at: float | None
    state_string: str = ""
    buildrequestid: int | None = None
    properties: dict[str, Any] = dataclasses.field(default_factory=dict)  # name -> value (sources dropped)

    @property
    def complete(self) -> bool:
        return self.complete_at is not None

    @property
    def result_name(self) -> str:
        if not self.complete:
            return "running"
        if self.results is None or not 0 <= self.results < len(Results):
            return "unknown"
        name: str = Results[self.results]
        return name

    def duration(self, now: float | None = None) -> float | None:
        end = self.complete_at if self.complete_at is not None else now
        if self.started_at is None or end is None:
            return None
        return max(0.0, end - self.started_at)

    def prop(self, name: str, default: Any = None) -> Any:
        value = self.properties.get(name)
        return default if value is None else value

    @property
    def route(self) -> str:
        """The web UI's route of the build (after `#/`)."""
        return f"builders/{self.builderid}/builds/{self.number}"


def index_builders(raw: Sequence[Record]) -> dict[int, Builder]:
    return {b["builderid"]: Builder(b["builderid"], b["name"], tuple(b.get("tags") or ())) for b in raw or []}


def to_build(raw: Record, builders: dict[int, Builder]) -> Build:
    props = {
        name: (pair[0] if isinstance(pair, (list, tuple)) else pair)
        for name, pair in (raw.get("properties") or {}).items()
    }
    builder = builders.get(raw["builderid"])
    return Build(
        buildid=raw["buildid"],
        builderid=raw["builderid"],
        builder=builder.name if builder else f"builder {raw['builderid']}",
        number=raw["number"],
        results=raw.get("results"),
        started_at=epoch(raw.get("started_at")),
        complete_at=epoch(raw.get("complete_at")),
        state_string=raw.get("state_string") or "",
        buildrequestid=raw.get("buildrequestid"),
        properties=props,
    )


def first_failing_step(steps: Sequence[Record]) -> str | None:
    """The name of a build's first step that ended FAILURE (else its first EXCEPTION step)."""
    ordered = sorted(steps or [], key=lambda s: s.get("number", 0))
    for wanted in FAILED:
        for step in ordered:
            if step.get("results") == wanted:
                name: str | None = step.get("name")
                return name
    return None


def gate_summary(steps: Sequence[Record]) -> str:
    for step in steps or []:
        if step.get("name") == GATE_STEP:
            text: str = step.get("state_string") or ""
            return text
    return ""
