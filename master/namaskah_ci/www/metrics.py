"""Prometheus metrics at `/metrics` on the web UI's port (every metric: docs/metrics.md).

- `BuildMetrics`: the bookkeeping. It owns its own `CollectorRegistry` (never the
  process-wide one, so a second instance cannot clash) and is fed one message at a
  time; labels are bounded: builder names, result names, environments and at most
  `MAX_BRANCHES` branches, never build, request or buildset ids.
- `MetricsService`: a `BuildbotService` that feeds it from Buildbot's message queue
  (build and build request events; nothing polls the database per scrape), loads
  the running builds and pending requests once from the data API when it starts,
  and serves `/metrics` on the web server (through `fixes/metrics_resource.py`: Buildbot
  has no public way to add a page there).
- `MetricsResource`: the text exposition; with `[www] public_view = false` it
  answers 403 unless the request carries a logged-in session (`www.config.logged_in`).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Generator, Iterable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from buildbot.data import resultspec
from buildbot.process.results import Results
from buildbot.util import service
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4 as CONTENT_TYPE  # our names are plain: any Prometheus
from twisted.internet import defer
from twisted.python import log
from twisted.python.failure import Failure
from twisted.web import resource

from namaskah_ci.fixes.metrics_resource import attach_child, detach_child
from namaskah_ci.names import PROP_COVERAGE, deploy_builder_name, rollback_builder_name
from namaskah_ci.text import epoch
from namaskah_ci.www.config import logged_in

PREFIX = "namaskah_ci_"
RESOURCE_NAME = b"metrics"  # served at /metrics (fixes/metrics_resource.attach_child)
MAX_BRANCHES = 50  # coverage series kept; the least recently updated branch goes first
DURATION_BUCKETS = (5, 15, 30, 60, 120, 300, 600, 900, 1200, 1800, 2700, 3600, 7200, float("inf"))
QUEUE_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, float("inf"))
DEPLOY_TAG = "deploy"


@dataclass(frozen=True)
class BuilderInfo:
    name: str
    tags: tuple[str, ...] = ()

    def deploy_kind(self) -> tuple[str, str] | None:
        """("deploy" | "rollback", environment) for a builder tagged ["deploy", <env>], else None."""
        if DEPLOY_TAG not in self.tags:
            return None
        for environment in (tag for tag in self.tags if tag != DEPLOY_TAG):
            if self.name == deploy_builder_name(environment):
                return "deploy", environment
            if self.name == rollback_builder_name(environment):
                return "rollback", environment
        return None


def result_name(code: Any) -> str:
    return Results[code] if isinstance(code, int) and 0 <= code < len(Results) else "unknown"


def field(message: Any, name: str) -> Any:
    """A field of a message: a dict, or the model object some messages carry (`cancel`)."""
    return message.get(name) if isinstance(message, dict) else getattr(message, name, None)


def property_value(properties: dict[str, Any], name: str) -> Any:
    """`getBuildProperties` gives {name: (value, source)}."""
    entry = properties.get(name)
    return entry[0] if isinstance(entry, (tuple, list)) and entry else None


class BuildMetrics:
    """Every metric, and the sets of running builds and pending requests behind the two gauges."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.builders: dict[int, BuilderInfo] = {}
        self.running: dict[int, set[int]] = {}  # builderid -> buildids
        self.pending: dict[int, set[int]] = {}  # builderid -> unclaimed buildrequestids
        self.submitted: dict[int, float] = {}  # buildrequestid -> submitted_at, until its first build starts
        self.branches: OrderedDict[str, None] = OrderedDict()
        # until the startup load is in, what the queue already said ended (so the load cannot revive it)
        self.loading = True
        self.ended_builds: set[int] = set()
        self.ended_requests: set[int] = set()
        reg = self.registry
        self.build_duration = Histogram(
            PREFIX + "build_duration_seconds",
            "Duration of finished builds, started to finished.",
            ["builder", "result"],
            buckets=DURATION_BUCKETS,
            registry=reg,
        )
        self.queue_time = Histogram(
            PREFIX + "build_queue_seconds",
            "Time from a build request's submission to the start of its first build.",
            ["builder"],
            buckets=QUEUE_BUCKETS,
            registry=reg,
        )
        self.builds = Counter(
            PREFIX + "builds", "Finished builds by builder and result.", ["builder", "result"], registry=reg
        )
        self.coverage = Gauge(
            PREFIX + "coverage_percent",
            "Line coverage of the last finished job build on a branch that published one.",
            ["branch"],
            registry=reg,
        )
        self.deploys = Counter(
            PREFIX + "deploys",
            "Finished deploy-<env> builds by environment and result.",
            ["environment", "result"],
            registry=reg,
        )
        self.rollbacks = Counter(
            PREFIX + "rollbacks",
            "Finished rollback-<env> builds by environment and result.",
            ["environment", "result"],
            registry=reg,
        )
        reg.register(_ActivityCollector(self))

    # --- builders ---------------------------------------------------------------------------
    def add_builder(self, builderid: int, data: dict[str, Any] | None) -> BuilderInfo | None:
        if not data or not data.get("name"):
            return None
        info = BuilderInfo(str(data["name"]), tuple(data.get("tags") or ()))
        self.builders[builderid] = info
        return info

    # --- build requests ---------------------------------------------------------------------
    def request_event(self, event: str, message: Any) -> None:
        brid, builderid = field(message, "buildrequestid"), field(message, "builderid")
        if brid is None or builderid is None:
            return
        pending = self.pending.setdefault(builderid, set())
        if event == "new":
            pending.add(brid)
            submitted = epoch(field(message, "submitted_at"))
            if submitted is not None:
                self.submitted[brid] = submitted
        elif event == "unclaimed":
            if not field(message, "complete"):
                pending.add(brid)
        elif event == "claimed":
            pending.discard(brid)
            if self.loading:
                self.ended_requests.add(brid)
        else:  # complete, cancel
            pending.discard(brid)
            self.submitted.pop(brid, None)
            if self.loading:
                self.ended_requests.add(brid)

    # --- builds ---------------------------------------------------------------------------
    def build_started(self, message: dict[str, Any]) -> float | None:
        """Count the build as running; the queue time of its request if this is the request's first build."""
        buildid, builderid = message.get("buildid"), message.get("builderid")
        if buildid is None or builderid is None:
            return None
        if not (self.loading and buildid in self.ended_builds):
            self.running.setdefault(builderid, set()).add(buildid)
        brid = message.get("buildrequestid")
        submitted = self.submitted.pop(brid, None) if brid is not None else None
        started = epoch(message.get("started_at"))
        if submitted is None or started is None:
            return None
        return max(0.0, started - submitted)

    def build_ended(self, message: dict[str, Any]) -> None:
        buildid, builderid = message.get("buildid"), message.get("builderid")
        if buildid is None:
            return
        if builderid is not None:
            self.running.get(builderid, set()).discard(buildid)
        if self.loading:
            self.ended_builds.add(buildid)

    def record_queue(self, builder: BuilderInfo, seconds: float) -> None:
        self.queue_time.labels(builder=builder.name).observe(seconds)

    def record_finished(self, builder: BuilderInfo, message: dict[str, Any], properties: dict[str, Any]) -> None:
        """A finished build: its result, duration, deploy or rollback, coverage."""
        result = result_name(message.get("results"))
        self.builds.labels(builder=builder.name, result=result).inc()
        started, finished = epoch(message.get("started_at")), epoch(message.get("complete_at"))
        if started is not None and finished is not None:
            self.build_duration.labels(builder=builder.name, result=result).observe(max(0.0, finished - started))
        kind = builder.deploy_kind()
        if kind is not None:
            counter = self.deploys if kind[0] == "deploy" else self.rollbacks
            counter.labels(environment=kind[1], result=result).inc()
        self.record_coverage(property_value(properties, "branch"), property_value(properties, PROP_COVERAGE))

    def record_coverage(self, branch: Any, coverage: Any) -> None:
        if not isinstance(branch, str) or not branch or coverage is None or isinstance(coverage, bool):
            return
        try:
            percent = float(coverage)
        except (TypeError, ValueError):
            return
        if not 0.0 <= percent <= 100.0:
            return
        self.coverage.labels(branch=branch).set(percent)
        self.branches[branch] = None
        self.branches.move_to_end(branch)
        while len(self.branches) > MAX_BRANCHES:
            oldest, _ = self.branches.popitem(last=False)
            self.coverage.remove(oldest)

    # --- the startup load -----------------------------------------------------------------
    def load(
        self, builders: Iterable[dict[str, Any]], running: Iterable[dict[str, Any]], pending: Iterable[dict[str, Any]]
    ) -> None:
        """What the data API said when the service started; later queue messages win over it."""
        for data in builders:
            self.add_builder(data["builderid"], data)
        for build in running:
            if build["buildid"] not in self.ended_builds:
                self.running.setdefault(build["builderid"], set()).add(build["buildid"])
        for request in pending:
            brid = request["buildrequestid"]
            if brid not in self.ended_requests:
                self.pending.setdefault(request["builderid"], set()).add(brid)
                submitted = epoch(request.get("submitted_at"))
                if submitted is not None:
                    self.submitted.setdefault(brid, submitted)
        self.loading = False
        self.ended_builds.clear()
        self.ended_requests.clear()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _ActivityCollector:
    """The running and pending gauges, read from the bookkeeping's sets at scrape time."""

    def __init__(self, metrics: BuildMetrics):
        self.metrics = metrics

    def collect(self) -> list[GaugeMetricFamily]:
        families = self._families()
        for builderid, info in sorted(self.metrics.builders.items(), key=lambda item: item[1].name):
            families[0].add_metric([info.name], len(self.metrics.running.get(builderid, ())))
            families[1].add_metric([info.name], len(self.metrics.pending.get(builderid, ())))
        return families

    @staticmethod
    def _families() -> list[GaugeMetricFamily]:
        return [
            GaugeMetricFamily(
                PREFIX + "builds_running", "Builds started and not finished, by builder.", labels=["builder"]
            ),
            GaugeMetricFamily(
                PREFIX + "builds_pending",
                "Build requests waiting for a worker (unclaimed), by builder.",
                labels=["builder"],
            ),
        ]


class MetricsResource(resource.Resource):
    isLeaf = True

    def __init__(self, metrics_service: MetricsService):
        super().__init__()  # type: ignore[no-untyped-call]  # Twisted leaves Resource.__init__ unannotated
        self.metrics_service = metrics_service

    def render_GET(self, request: Any) -> bytes:
        request.setHeader(b"cache-control", b"no-store")
        if not self.metrics_service.allowed(request):
            request.setResponseCode(403)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"log in to see the metrics\n"
        request.setHeader(b"content-type", CONTENT_TYPE.encode())
        return self.metrics_service.metrics.exposition()


class MetricsService(service.BuildbotService):
    """Feeds `BuildMetrics` from the message queue and serves it at /metrics."""

    name = "metrics"
    BUILD_EVENTS = ("new", "finished")
    REQUEST_EVENTS = ("new", "claimed", "unclaimed", "complete", "cancel")

    def checkConfig(self, public_view: bool = True) -> None:
        pass

    def reconfigService(self, public_view: bool = True) -> defer.Deferred[None]:
        self.public_view = public_view
        done: defer.Deferred[None] = super().reconfigService()
        return done

    @defer.inlineCallbacks
    def startService(self) -> Generator[Any, Any, None]:
        yield super().startService()
        self.metrics = BuildMetrics()
        self.resource = MetricsResource(self)
        self._lookups: dict[int, list[defer.Deferred[BuilderInfo | None]]] = {}
        self._consumers: list[Any] = []
        self._session_api = SimpleNamespace(master=self.master)  # what `logged_in` reads the session secret from
        mq = self.master.mq
        for event in self.BUILD_EVENTS:
            self._consumers.append((yield mq.startConsuming(self._on_build, ("builds", None, event))))
        for event in self.REQUEST_EVENTS:
            self._consumers.append((yield mq.startConsuming(self._on_request, ("buildrequests", None, event))))
        attach_child(self.master.www, RESOURCE_NAME, self.resource)
        self.loaded = self._load()  # not waited for: startup goes on meanwhile

    @defer.inlineCallbacks
    def stopService(self) -> Generator[Any, Any, None]:
        for consumer in getattr(self, "_consumers", []):
            yield consumer.stopConsuming()
        self._consumers = []
        if getattr(self, "resource", None) is not None:
            detach_child(self.master.www, RESOURCE_NAME, self.resource)
        yield super().stopService()

    @defer.inlineCallbacks
    def _load(self) -> Generator[Any, Any, None]:
        try:
            builders = yield self.master.data.get(("builders",))
            running = yield self.master.data.get(("builds",), filters=[resultspec.Filter("complete", "eq", [False])])
            pending = yield self.master.data.get(
                ("buildrequests",),
                filters=[resultspec.Filter("claimed", "eq", [False]), resultspec.Filter("complete", "eq", [False])],
            )
            self.metrics.load(builders or [], running or [], pending or [])
        except Exception as exc:  # the gauges then count from the queue alone
            self.metrics.load([], [], [])
            log.err(exc, "metrics: loading the running builds and pending requests failed")  # type: ignore[no-untyped-call]  # Twisted leaves log.err unannotated

    def builder(self, builderid: int) -> defer.Deferred[BuilderInfo | None]:
        """The builder's name and tags, from the data API once per builder (None if it is unknown)."""
        if builderid in self.metrics.builders:
            return defer.succeed(self.metrics.builders[builderid])
        waiting: defer.Deferred[BuilderInfo | None] = defer.Deferred()
        if builderid in self._lookups:  # one lookup at a time per builder; everyone waits for it
            self._lookups[builderid].append(waiting)
            return waiting
        self._lookups[builderid] = [waiting]

        def failed(failure: Failure) -> None:
            log.err(failure, f"metrics: looking up builder {builderid}")  # type: ignore[no-untyped-call]  # Twisted leaves log.err unannotated

        def wake(info: BuilderInfo | None) -> None:
            for w in self._lookups.pop(builderid, []):
                w.callback(info)

        d = self.master.data.get(("builders", builderid))
        d.addCallback(lambda data: self.metrics.add_builder(builderid, data))
        d.addErrback(failed)
        d.addCallback(wake)
        return waiting

    def _on_request(self, key: tuple[str, ...], message: Any) -> defer.Deferred[BuilderInfo | None] | None:
        self.metrics.request_event(key[-1], message)
        builderid = field(message, "builderid")
        return self.builder(builderid) if builderid is not None else None  # so the gauge has its name

    @defer.inlineCallbacks
    def _on_build(self, key: tuple[str, ...], message: dict[str, Any]) -> Generator[Any, Any, None]:
        if key[-1] == "new":
            seconds = self.metrics.build_started(message)
            info = yield self.builder(message["builderid"])
            if info is not None and seconds is not None:
                self.metrics.record_queue(info, seconds)
            return
        self.metrics.build_ended(message)
        info = yield self.builder(message["builderid"])
        properties = yield self.master.db.builds.getBuildProperties(message["buildid"])
        if info is not None:
            self.metrics.record_finished(info, message, properties or {})

    def allowed(self, request: Any) -> bool:
        if self.public_view:
            return True
        cookie = request.getHeader(b"cookie")
        environ = {"HTTP_COOKIE": cookie.decode("latin-1") if isinstance(cookie, bytes) else (cookie or "")}
        return logged_in(environ, self._session_api)
