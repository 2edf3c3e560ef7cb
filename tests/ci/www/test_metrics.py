"""The metrics service's bookkeeping, fed fake message-queue messages: counters, histograms, gauges,
coverage per branch, deploys and rollbacks, the startup load, /metrics and its access rule."""

from __future__ import annotations

import calendar
import datetime
from types import SimpleNamespace

import jwt
from buildbot.process.results import CANCELLED, FAILURE, RETRY, SUCCESS
from buildbot.test import fakedb
from buildbot.test.fake import fakemaster
from buildbot.test.reactor import TestReactorMixin
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import defer
from twisted.trial import unittest
from twisted.web.resource import Resource
from twisted.web.test.requesthelper import DummyRequest

from namaskah_ci.www.metrics import MAX_BRANCHES, RESOURCE_NAME, BuilderInfo, BuildMetrics, MetricsService

T0 = datetime.datetime(2026, 1, 31, 12, 0, 0, tzinfo=datetime.UTC)
PIPELINE = BuilderInfo("pipeline")
TEST = BuilderInfo("test-py3.11", ("check",))
DEPLOY = BuilderInfo("deploy-staging", ("deploy", "staging"))
ROLLBACK = BuilderInfo("rollback-staging", ("deploy", "staging"))
ALLOWED_LABELS = {"builder", "result", "branch", "environment", "le"}


def at(seconds: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)


def samples(text: str | bytes) -> dict[tuple, float]:
    """{(sample name, sorted labels): value} of an exposition."""
    text = text.decode() if isinstance(text, bytes) else text
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(metrics_or_text, name: str, **labels) -> float | None:
    text = metrics_or_text.exposition() if isinstance(metrics_or_text, BuildMetrics) else metrics_or_text
    return samples(text).get((name, tuple(sorted(labels.items()))))


def request_msg(brid: int, builderid: int, submitted: float = 0, complete: bool = False) -> dict:
    return {"buildrequestid": brid, "builderid": builderid, "submitted_at": at(submitted), "complete": complete}


def build_msg(buildid: int, builderid: int, brid: int, started: float, finished: float | None = None, results=None):
    return {
        "buildid": buildid,
        "builderid": builderid,
        "buildrequestid": brid,
        "started_at": at(started),
        "complete_at": None if finished is None else at(finished),
        "complete": finished is not None,
        "results": results,
    }


def loaded(*builders: tuple[int, BuilderInfo]) -> BuildMetrics:
    metrics = BuildMetrics()
    metrics.load([{"builderid": bid, "name": info.name, "tags": list(info.tags)} for bid, info in builders], [], [])
    return metrics


def test_a_build_request_is_pending_then_running_then_counted():
    metrics = loaded((1, PIPELINE))
    assert value(metrics, "namaskah_ci_builds_pending", builder="pipeline") == 0
    metrics.request_event("new", request_msg(10, 1, submitted=0))
    assert value(metrics, "namaskah_ci_builds_pending", builder="pipeline") == 1
    metrics.request_event("claimed", request_msg(10, 1))
    assert value(metrics, "namaskah_ci_builds_pending", builder="pipeline") == 0
    queued = metrics.build_started(build_msg(100, 1, 10, started=7))
    assert queued == 7
    metrics.record_queue(PIPELINE, queued)
    assert value(metrics, "namaskah_ci_builds_running", builder="pipeline") == 1
    finished = build_msg(100, 1, 10, started=7, finished=97, results=SUCCESS)
    metrics.build_ended(finished)
    metrics.record_finished(PIPELINE, finished, {})
    metrics.request_event("complete", request_msg(10, 1, complete=True))
    assert value(metrics, "namaskah_ci_builds_running", builder="pipeline") == 0
    assert value(metrics, "namaskah_ci_builds_total", builder="pipeline", result="success") == 1
    assert value(metrics, "namaskah_ci_build_duration_seconds_count", builder="pipeline", result="success") == 1
    assert value(metrics, "namaskah_ci_build_duration_seconds_sum", builder="pipeline", result="success") == 90
    assert (
        value(metrics, "namaskah_ci_build_duration_seconds_bucket", builder="pipeline", result="success", le="60.0")
        == 0
    )
    assert (
        value(metrics, "namaskah_ci_build_duration_seconds_bucket", builder="pipeline", result="success", le="120.0")
        == 1
    )
    assert value(metrics, "namaskah_ci_build_queue_seconds_count", builder="pipeline") == 1
    assert value(metrics, "namaskah_ci_build_queue_seconds_sum", builder="pipeline") == 7


def test_only_the_first_build_of_a_request_has_a_queue_time():
    metrics = loaded((1, PIPELINE))
    metrics.request_event("new", request_msg(10, 1, submitted=0))
    assert metrics.build_started(build_msg(100, 1, 10, started=3)) == 3
    metrics.build_ended(build_msg(100, 1, 10, started=3, finished=5, results=RETRY))
    metrics.request_event("unclaimed", request_msg(10, 1))
    assert value(metrics, "namaskah_ci_builds_pending", builder="pipeline") == 1
    assert metrics.build_started(build_msg(101, 1, 10, started=60)) is None
    assert metrics.submitted == {}


def test_a_cancelled_request_stops_being_pending_and_forgets_its_submission():
    metrics = loaded((1, PIPELINE))
    metrics.request_event("new", request_msg(10, 1))
    metrics.request_event("cancel", SimpleNamespace(buildrequestid=10, builderid=1))  # a model object, not a dict
    assert value(metrics, "namaskah_ci_builds_pending", builder="pipeline") == 0
    assert metrics.submitted == {}


def test_results_are_counted_by_builder_and_result_name():
    metrics = loaded((1, PIPELINE), (2, TEST))
    for n, (info, results) in enumerate([(TEST, SUCCESS), (TEST, FAILURE), (TEST, FAILURE), (PIPELINE, CANCELLED)]):
        metrics.record_finished(info, build_msg(n, 2, n, started=0, finished=10, results=results), {})
    assert value(metrics, "namaskah_ci_builds_total", builder="test-py3.11", result="success") == 1
    assert value(metrics, "namaskah_ci_builds_total", builder="test-py3.11", result="failure") == 2
    assert value(metrics, "namaskah_ci_builds_total", builder="pipeline", result="cancelled") == 1
    metrics.record_finished(TEST, build_msg(9, 2, 9, started=0, finished=1, results=99), {})
    assert value(metrics, "namaskah_ci_builds_total", builder="test-py3.11", result="unknown") == 1


def test_deploys_and_rollbacks_are_counted_by_environment_from_the_builder_tags():
    metrics = loaded()
    metrics.record_finished(DEPLOY, build_msg(1, 3, 1, 0, 30, SUCCESS), {})
    metrics.record_finished(DEPLOY, build_msg(2, 3, 2, 0, 30, FAILURE), {})
    metrics.record_finished(ROLLBACK, build_msg(3, 4, 3, 0, 30, SUCCESS), {})
    metrics.record_finished(BuilderInfo("deploy-notes", ("check",)), build_msg(4, 5, 4, 0, 1, SUCCESS), {})
    assert value(metrics, "namaskah_ci_deploys_total", environment="staging", result="success") == 1
    assert value(metrics, "namaskah_ci_deploys_total", environment="staging", result="failure") == 1
    assert value(metrics, "namaskah_ci_rollbacks_total", environment="staging", result="success") == 1
    assert not [key for key in samples(metrics.exposition()) if ("environment", "notes") in key[1]]
    assert DEPLOY.deploy_kind() == ("deploy", "staging") and ROLLBACK.deploy_kind() == ("rollback", "staging")
    assert TEST.deploy_kind() is None and PIPELINE.deploy_kind() is None


def test_coverage_is_the_last_value_per_branch_and_bad_values_are_ignored():
    metrics = loaded()
    props = {"branch": ("main", "Build"), "coverage": (81.5, "ReportsUpload")}
    metrics.record_finished(TEST, build_msg(1, 2, 1, 0, 10, SUCCESS), props)
    metrics.record_finished(TEST, build_msg(2, 2, 2, 0, 10, FAILURE), {**props, "coverage": ("79.25", "x")})
    metrics.record_finished(
        TEST, build_msg(3, 2, 3, 0, 10, SUCCESS), {"branch": ("develop", "x"), "coverage": (90, "x")}
    )
    for bad in ("n/a", None, 140, True):
        metrics.record_finished(TEST, build_msg(4, 2, 4, 0, 10, SUCCESS), {**props, "coverage": (bad, "x")})
    metrics.record_finished(TEST, build_msg(5, 2, 5, 0, 10, SUCCESS), {"coverage": (10, "x")})  # no branch
    assert value(metrics, "namaskah_ci_coverage_percent", branch="main") == 79.25
    assert value(metrics, "namaskah_ci_coverage_percent", branch="develop") == 90


def test_coverage_keeps_a_bounded_number_of_branches():
    metrics = loaded()
    for n in range(MAX_BRANCHES + 5):
        metrics.record_coverage(f"feature/{n}", 50 + n % 10)
    metrics.record_coverage("feature/5", 12)  # refreshed: now the newest
    series = [key for key in samples(metrics.exposition()) if key[0] == "namaskah_ci_coverage_percent"]
    assert len(series) == MAX_BRANCHES
    assert value(metrics, "namaskah_ci_coverage_percent", branch="feature/0") is None
    assert value(metrics, "namaskah_ci_coverage_percent", branch="feature/5") == 12
    assert value(metrics, "namaskah_ci_coverage_percent", branch=f"feature/{MAX_BRANCHES + 4}") is not None


def test_the_startup_load_never_revives_what_the_queue_already_ended():
    metrics = BuildMetrics()
    metrics.build_ended(build_msg(100, 1, 10, started=0, finished=5, results=SUCCESS))
    metrics.request_event("claimed", request_msg(10, 1))
    metrics.request_event("new", request_msg(12, 1, submitted=4))
    metrics.load(
        [{"builderid": 1, "name": "pipeline", "tags": []}],
        [build_msg(100, 1, 10, started=0), build_msg(101, 1, 11, started=1)],
        [request_msg(10, 1), request_msg(13, 1, submitted=2), request_msg(12, 1, submitted=4)],
    )
    assert metrics.running == {1: {101}}
    assert metrics.pending == {1: {12, 13}}
    assert metrics.submitted == {12: at(4).timestamp(), 13: at(2).timestamp()}
    assert not metrics.loading and not metrics.ended_builds and not metrics.ended_requests


def test_labels_are_bounded_names_never_ids():
    metrics = loaded((1, PIPELINE), (2, TEST), (3, DEPLOY))
    metrics.request_event("new", request_msg(10, 2))
    metrics.build_started(build_msg(100, 1, 9, started=0))
    metrics.record_finished(DEPLOY, build_msg(7, 3, 7, 0, 1, SUCCESS), {"branch": ("main", "x"), "coverage": (5, "x")})
    text = metrics.exposition().decode()
    for family in text_string_to_metric_families(text):
        assert family.name.startswith("namaskah_ci_"), family.name
        assert family.documentation, family.name
        for sample in family.samples:
            assert set(sample.labels) <= ALLOWED_LABELS, sample
    assert "buildid" not in text and "buildrequestid" not in text and "buildset" not in text


def test_two_instances_do_not_share_a_registry():
    first, second = BuildMetrics(), BuildMetrics()
    first.record_coverage("main", 50)
    assert value(second, "namaskah_ci_coverage_percent", branch="main") is None


class MetricsServiceTest(TestReactorMixin, unittest.TestCase):
    """The service on a fake master with a real data API: messages in, /metrics out."""

    SECRET = "session-secret-of-at-least-32-bytes-for-hs256"

    @defer.inlineCallbacks
    def setUp(self):  # type: ignore[override]  # trial waits for the Deferred a setUp returns
        self.setup_test_reactor()
        self.master = yield fakemaster.make_master(self, wantData=True)
        self.root = Resource()
        self.master.www = SimpleNamespace(root=self.root, site=SimpleNamespace(session_secret=self.SECRET))
        yield self.master.db.insert_test_data(
            [
                fakedb.Master(id=fakedb.FakeDBConnector.MASTER_ID),
                fakedb.Worker(id=1, name="local"),
                fakedb.Builder(id=1, name="pipeline"),
                fakedb.Builder(id=2, name="deploy-staging"),
                fakedb.Tag(id=1, name="deploy"),
                fakedb.Tag(id=2, name="staging"),
                fakedb.BuildersTags(builderid=2, tagid=1),
                fakedb.BuildersTags(builderid=2, tagid=2),
                fakedb.SourceStamp(id=1, branch="main"),
                fakedb.Buildset(id=1),
                fakedb.BuildsetSourceStamp(buildsetid=1, sourcestampid=1),
                fakedb.BuildRequest(id=10, buildsetid=1, builderid=1, submitted_at=1_000),
                fakedb.BuildRequest(id=11, buildsetid=1, builderid=1, submitted_at=1_010),
                fakedb.BuildRequestClaim(brid=10, masterid=fakedb.FakeDBConnector.MASTER_ID, claimed_at=1_020),
                fakedb.Build(
                    id=100,
                    number=1,
                    buildrequestid=10,
                    builderid=1,
                    workerid=1,
                    masterid=fakedb.FakeDBConnector.MASTER_ID,
                    started_at=1_030,
                ),
            ]
        )

    @defer.inlineCallbacks
    def start(self, public_view: bool = True):
        svc = MetricsService(public_view=public_view)
        yield svc.setServiceParent(self.master)
        yield svc.startService()
        yield svc.loaded
        self.addCleanup(lambda: svc.stopService() if svc.running else None)
        return svc

    def scrape(self, svc, cookie: str | None = None) -> tuple[int, str]:
        request = DummyRequest([b""])
        if cookie:
            request.requestHeaders.setRawHeaders(b"cookie", [cookie.encode()])
        child = self.root.children[RESOURCE_NAME]
        self.assertIs(child, svc.resource)
        body = child.render(request)
        return request.responseCode or 200, body.decode()

    @defer.inlineCallbacks
    def deliver(self, kind: str, ident: int, event: str):
        """Send what the data API produces for that event (unchecked: the fake mq's own validator still
        expects the messages' older shape)."""
        message = yield self.master.data.get((kind, ident))
        self.master.mq.verifyMessages = False
        yield self.master.mq.callConsumer((kind, str(ident), event), message)

    @defer.inlineCallbacks
    def test_the_gauges_start_from_the_data_api_and_follow_the_queue(self):
        svc = yield self.start()
        _, text = self.scrape(svc)
        self.assertEqual(value(text, "namaskah_ci_builds_running", builder="pipeline"), 1)
        self.assertEqual(value(text, "namaskah_ci_builds_pending", builder="pipeline"), 1)
        self.assertEqual(value(text, "namaskah_ci_builds_running", builder="deploy-staging"), 0)
        # request 11 is claimed and built; build 100 finishes with a coverage report on main
        yield self.master.db.buildrequests.claimBuildRequests([11], claimed_at=at(0))
        yield self.deliver("buildrequests", 11, "claimed")
        yield self.master.db.insert_test_data(
            [
                fakedb.Build(
                    id=101,
                    number=2,
                    buildrequestid=11,
                    builderid=1,
                    workerid=1,
                    masterid=fakedb.FakeDBConnector.MASTER_ID,
                    started_at=1_070,
                ),
                fakedb.BuildProperty(buildid=100, name="branch", value="main"),
                fakedb.BuildProperty(buildid=100, name="coverage", value=88.5),
            ]
        )
        yield self.deliver("builds", 101, "new")
        yield self.master.db.builds.finishBuild(buildid=100, results=SUCCESS)
        yield self.deliver("builds", 100, "finished")
        _, text = self.scrape(svc)
        self.assertEqual(value(text, "namaskah_ci_builds_running", builder="pipeline"), 1)
        self.assertEqual(value(text, "namaskah_ci_builds_pending", builder="pipeline"), 0)
        self.assertEqual(value(text, "namaskah_ci_build_queue_seconds_sum", builder="pipeline"), 60)
        self.assertEqual(value(text, "namaskah_ci_builds_total", builder="pipeline", result="success"), 1)
        self.assertEqual(
            value(text, "namaskah_ci_build_duration_seconds_count", builder="pipeline", result="success"), 1
        )
        self.assertEqual(value(text, "namaskah_ci_coverage_percent", branch="main"), 88.5)

    @defer.inlineCallbacks
    def test_a_deploy_build_is_counted_by_environment(self):
        svc = yield self.start()
        yield self.master.db.insert_test_data(
            [
                fakedb.BuildRequest(id=20, buildsetid=1, builderid=2, submitted_at=1_000),
                fakedb.Build(
                    id=200,
                    number=1,
                    buildrequestid=20,
                    builderid=2,
                    workerid=1,
                    masterid=fakedb.FakeDBConnector.MASTER_ID,
                    started_at=1_000,
                ),
            ]
        )
        yield self.deliver("buildrequests", 20, "new")
        yield self.deliver("builds", 200, "new")
        yield self.master.db.builds.finishBuild(buildid=200, results=FAILURE)
        yield self.deliver("builds", 200, "finished")
        _, text = self.scrape(svc)
        self.assertEqual(value(text, "namaskah_ci_deploys_total", environment="staging", result="failure"), 1)
        self.assertEqual(value(text, "namaskah_ci_builds_total", builder="deploy-staging", result="failure"), 1)

    @defer.inlineCallbacks
    def test_a_reconfig_registers_nothing_twice(self):
        svc = yield self.start()
        consumers = len(self.master.mq.qrefs)
        resource = svc.resource
        yield svc.reconfigServiceWithSibling(MetricsService(public_view=False))
        self.assertEqual(len(self.master.mq.qrefs), consumers)
        self.assertIs(self.root.children[RESOURCE_NAME], resource)
        self.assertFalse(svc.public_view)
        yield svc.stopService()
        self.assertNotIn(RESOURCE_NAME, self.root.children)
        self.assertFalse(
            [
                q
                for q in self.master.mq.qrefs
                if getattr(q, "callback", None) is not None and getattr(q.callback, "__self__", None) is svc
            ]
        )

    @defer.inlineCallbacks
    def test_the_resource_is_attached_as_soon_as_the_web_site_is_set_up(self):
        root = self.root

        class Www:  # like WWWService before its first reconfig: no root until setupSite
            site = None

            def setupSite(self, new_config):
                self.root = root
                return "set up"

        www = self.master.www = Www()
        svc = yield self.start()
        self.assertNotIn(RESOURCE_NAME, root.children)
        self.assertEqual(www.setupSite("config"), "set up")
        self.assertIs(root.children[RESOURCE_NAME], svc.resource)
        self.assertNotIn("setupSite", vars(www))  # the wrapper is gone
        yield svc.stopService()
        self.assertNotIn(RESOURCE_NAME, root.children)

    @defer.inlineCallbacks
    def test_a_service_stopped_before_the_site_is_set_up_leaves_no_wrapper(self):
        class Www:
            def setupSite(self, new_config):
                self.root = Resource()

        www = self.master.www = Www()
        svc = yield self.start()
        self.assertIn("setupSite", vars(www))
        yield svc.stopService()
        self.assertNotIn("setupSite", vars(www))
        www.setupSite(None)
        self.assertNotIn(RESOURCE_NAME, www.root.children)

    @defer.inlineCallbacks
    def test_public_view_off_needs_a_logged_in_session(self):
        svc = yield self.start(public_view=False)
        status, body = self.scrape(svc)
        self.assertEqual(status, 403)
        self.assertNotIn("namaskah_ci_", body)
        status, _ = self.scrape(
            svc, "TWISTED_SESSION=" + self.token("admin", "another-secret-also-long-enough-for-hs256")
        )
        self.assertEqual(status, 403)
        status, _ = self.scrape(svc, "TWISTED_SESSION=" + self.token(None, self.SECRET))
        self.assertEqual(status, 403)
        status, body = self.scrape(svc, "other=1; TWISTED_SESSION=" + self.token("admin", self.SECRET))
        self.assertEqual(status, 200)
        self.assertIn("namaskah_ci_builds_running", body)

    def token(self, username: str | None, secret: str) -> str:
        exp = calendar.timegm((datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)).timetuple())
        user_info: dict[str, object] = {"username": username} if username else {"anonymous": True}
        return jwt.encode({"user_info": user_info, "exp": exp}, secret, algorithm="HS256")
