"""The dashboards (Pipelines, Deploys, Trends) without a master: a fake of the data-API answers
stands in for `BuildbotData`, and counts the rounds and reads each page costs.

Covers the shaping (rows per branch and revision, cells, failing steps, columns that differ by
revision, the gate, deploys, what is live, trends), the bounded number of reads per page (and
fewer once finished builds are cached), the HTML (escaping, links embedded in the web UI and
standalone), the SVG charts (well-formed, escaped), the WSGI routes and the menu entries.
"""

from __future__ import annotations

import dataclasses
import datetime
import xml.etree.ElementTree as ElementTree

import pytest
from buildbot.process.results import CANCELLED, EXCEPTION, FAILURE, SKIPPED, SUCCESS, WARNINGS

from namaskah_ci.dashboard import charts
from namaskah_ci.dashboard.app import DashboardApp, dashboard_entries
from namaskah_ci.dashboard.data import FinishedCache, first_failing_step
from namaskah_ci.dashboard.deploys import load_deploy_history
from namaskah_ci.dashboard.layout import EMBEDDED, STANDALONE, pipelines_page
from namaskah_ci.dashboard.pipelines import load_pipeline_page
from namaskah_ci.dashboard.trends import load_trends
from namaskah_ci.dashboard.views import deploys_page, trends_page
from namaskah_ci.settings import load_settings
from namaskah_ci.www.config import LoggedInOnly, make_plugins

T0 = 1_800_000_000.0
EVIL = '<script>alert("x")</script>'


def stamp(value):
    return None if value is None else datetime.datetime.fromtimestamp(value, datetime.UTC)


class FakeData:
    """Builders and builds as the data API returns them; `fetch` answers the dashboards' queries."""

    def __init__(self):
        self.builders, self.builds, self.rounds = [], [], []

    def builder(self, name, *tags):
        self.builders.append({"builderid": len(self.builders) + 1, "name": name, "tags": list(tags)})

    def build(self, builder, start, end, results, props=None, parent=None, steps=(), state=""):
        builderid = next(b["builderid"] for b in self.builders if b["name"] == builder)
        raw = {
            "buildid": len(self.builds) + 1,
            "number": 1 + sum(b["builderid"] == builderid for b in self.builds),
            "builderid": builderid,
            "buildrequestid": 500 + len(self.builds),
            "started_at": stamp(start),
            "complete_at": stamp(end),
            "complete": end is not None,
            "results": results,
            "state_string": state or f"{builder} done",
            "_props": dict(props or {}),
            "_parent": parent,
            "_steps": [{"number": i, "name": n, "results": r, "state_string": s} for i, (n, r, s) in enumerate(steps)],
        }
        self.builds.append(raw)
        return raw

    def public(self, raw, properties=()):
        data = {k: v for k, v in raw.items() if not k.startswith("_")}
        data["properties"] = {k: (v, "fake") for k, v in raw["_props"].items() if k in properties}
        return data

    def answer(self, query):
        path, props = query.path, query.properties
        if path == ("builders",):
            return [dict(b) for b in self.builders]
        if path[0] == "builders":
            ids = [b["builderid"] for b in self.builders if b["name"] == path[1]]
            found = [b for b in self.builds if b["builderid"] in ids]
            for field, _, values in query.filters:
                found = [b for b in found if b[field] in values]
            key = query.order[0].lstrip("-")
            found.sort(key=lambda b: b[key] or stamp(0), reverse=query.order[0].startswith("-"))
            start = query.offset or 0
            return [self.public(b, props) for b in found[start : start + (query.limit or len(found))]]
        if path[0] == "builds" and path[2:] == ("triggered_builds",):
            return [self.public(b) for b in self.builds if b["_parent"] == int(path[1])]
        if path[0] == "builds" and path[2:] == ("steps",):
            return [dict(s) for s in self.builds[int(path[1]) - 1]["_steps"]]
        if path == ("builds",):
            ((_, _, ids),) = query.filters
            return [self.public(b, props) for b in self.builds if b["buildid"] in ids]
        if path == ("buildrequests",):
            ((_, _, ids),) = query.filters
            return [{"buildrequestid": b["buildrequestid"], "submitted_at": stamp(b["started_at"].timestamp() - 30)}
                    for b in self.builds if b["buildrequestid"] in ids]  # fmt: skip
        raise AssertionError(f"unexpected query {query}")

    def fetch(self, queries):
        self.rounds.append(list(queries))
        return [self.answer(q) for q in queries]

    def pipeline(self, at, revision, branch="main", jobs=("lint", "test"), results=None, done=True, **extra):
        results = results or {}
        worst = FAILURE if any(r in (FAILURE, EXCEPTION) for r in results.values()) else SUCCESS
        gate = "not deploying: lint: failure" if worst else "all 2 required checks passed: deploy requested"
        props = {"revision": revision, "branch": branch, "pipeline_jobs": list(jobs), **extra}
        steps = [("pipeline file", SUCCESS, "2 checks"), ("deploy gate", SKIPPED if worst else SUCCESS, gate)]
        return self.build("pipeline", at, at + 100 if done else None, worst if done else None, props, steps=steps)


def seeded() -> FakeData:
    data = FakeData()
    data.builder("pipeline", "pipeline")
    for name in ("lint", "test", "integration"):
        data.builder(name, "check")
    data.builder("codeql", "analysis")
    data.builder("deploy-production", "deploy", "production")
    data.builder("rollback-production", "deploy", "production")
    return data


def job(data, name, pipeline, results=SUCCESS, start=1.0, seconds=30.0, failing=None, props=None):
    at = pipeline["started_at"].timestamp() + start
    steps = [("checkout", SUCCESS, ""), ("flake8", FAILURE if failing == "flake8" else SUCCESS, ""),
             ("mypy", FAILURE if failing else SUCCESS, "")]  # fmt: skip
    end = None if results is None else at + seconds
    return data.build(name, at, end, results, props, parent=pipeline["buildid"], steps=steps)


def deploy(data, pipeline, results=SUCCESS, deploy_id="dep-1", builder="deploy-production", **props):
    at = pipeline["complete_at"].timestamp() + 5
    values = {"deploy_revision": pipeline["_props"]["revision"], "render_deploy_id": deploy_id, **props}
    return data.build(builder, at, at + 60, results, values, parent=pipeline["buildid"], state="deployed it")


# --- the pipeline page -------------------------------------------------------------------------
def test_rows_cells_failing_steps_gate_and_deploy():
    data = seeded()
    good = data.pipeline(T0, "a" * 40)
    job(data, "lint", good)
    job(data, "test", good, seconds=90)
    deploy(data, good, deploy_id="dep-abc")
    bad = data.pipeline(T0 + 600, "b" * 40, results={"lint": FAILURE}, check_results={"integration": "cancelled"})
    job(data, "lint", bad, FAILURE, failing="flake8")
    job(data, "test", bad, EXCEPTION, failing="mypy")
    page = load_pipeline_page(data, required=["lint"])
    newest, oldest = page.rows
    assert (newest.revision, oldest.revision) == ("b" * 40, "a" * 40)
    assert newest.cells["lint"].state == "failure" and newest.cells["lint"].failing_step == "flake8"
    assert newest.cells["test"].state == "exception" and newest.cells["test"].failing_step == "mypy"
    assert newest.cells["integration"].state == "cancelled" and newest.cells["integration"].build is None
    assert newest.gate == "not deploying: lint: failure" and newest.deploys == ()
    tested = oldest.cells["test"].build
    assert tested is not None and tested.duration() == 90.0 and oldest.cells["lint"].failing_step is None
    (cell,) = oldest.deploys
    assert (cell.environment, cell.deploy_id, cell.build.result_name) == ("production", "dep-abc", "success")
    assert [(c.builder, c.kind, c.required) for c in page.columns] == [
        ("lint", "check", True), ("test", "check", False), ("integration", "check", False)
    ]  # fmt: skip
    # no [checks] required (the default): the gate requires the file's verdict jobs, every check column
    default = load_pipeline_page(data)
    assert [(c.builder, c.required) for c in default.columns] == [("lint", True), ("test", True), ("integration", True)]


def test_first_failing_step_is_the_first_failure_then_the_first_exception():
    steps = [{"number": 3, "name": "late", "results": FAILURE}, {"number": 1, "name": "boom", "results": EXCEPTION},
             {"number": 2, "name": "early", "results": FAILURE}]  # fmt: skip
    assert first_failing_step(steps) == "early"
    assert first_failing_step(steps[1:2]) == "boom"
    assert first_failing_step([{"number": 0, "name": "ok", "results": SUCCESS}]) is None


def test_one_row_per_branch_and_revision_and_columns_that_differ_by_revision():
    data = seeded()
    first = data.pipeline(T0, "c" * 40, jobs=("lint",))
    job(data, "lint", first)
    again = data.pipeline(T0 + 100, "c" * 40, jobs=("lint",))
    job(data, "lint", again, FAILURE)
    job(data, "lint", again, SUCCESS, start=50)  # the retry: the last attempt counts
    other = data.pipeline(T0 + 200, "c" * 40, branch="develop", jobs=("lint", "integration"))
    job(data, "codeql", other)
    running = data.pipeline(T0 + 300, "d" * 40, jobs=("lint", "test"), done=False)
    job(data, "lint", running, None)
    rows = load_pipeline_page(data).rows
    assert [(r.revision[0], r.branch) for r in rows] == [("d", "main"), ("c", "develop"), ("c", "main")]
    assert [b.number for b in rows[2].earlier] == [1] and rows[2].pipeline.number == 2
    assert rows[2].cells["lint"].state == "success" and rows[2].cells["lint"].attempts == 2
    assert rows[0].cells["lint"].state == "running" and rows[0].cells["test"].state == "pending"
    assert rows[1].cells["integration"].state == "not run" and rows[1].cells["codeql"].state == "success"
    assert "test" not in rows[1].cells and "integration" not in rows[2].cells
    page = load_pipeline_page(data)
    assert [(c.builder, c.kind) for c in page.columns] == [
        ("lint", "check"), ("test", "check"), ("integration", "check"), ("codeql", "analysis")
    ]  # fmt: skip
    html = pipelines_page(page, EMBEDDED, T0 + 400)
    assert html.count("not in this revision's pipeline") == 6  # 2 + 1 + 3 columns a row's pipeline lacks


def test_a_page_costs_three_rounds_and_fewer_reads_once_cached():
    data = seeded()
    for i in range(30):
        pipeline = data.pipeline(T0 + 600 * i, f"{i:040x}", results={"lint": FAILURE} if i % 5 == 0 else None)
        job(data, "lint", pipeline, FAILURE if i % 5 == 0 else SUCCESS, failing="flake8")
        job(data, "test", pipeline)
        if i % 5:
            deploy(data, pipeline)
    cache = FinishedCache()
    page = load_pipeline_page(data, per_page=25, cache=cache)
    sizes = [len(r) for r in data.rounds]
    assert sizes == [2, 25 + 25 + 1, 5 + 1]  # builders + page; children, steps, props; failing steps, deploys
    assert (page.total, page.pages, page.has_next) == (30, 2, True)
    data.rounds.clear()
    assert load_pipeline_page(data, per_page=25, cache=cache) == page
    assert [len(r) for r in data.rounds] == [2, 25, 0]  # only the triggered builds are read again
    data.rounds.clear()
    second = load_pipeline_page(data, page=2, per_page=25, cache=cache)
    assert [r.pipeline.number for r in second.rows] == [5, 4, 3, 2, 1] and not second.has_next
    assert data.rounds[0][1].offset == 25 and data.rounds[0][1].limit == 25


def test_running_builds_are_never_cached():
    data = seeded()
    pipeline = data.pipeline(T0, "e" * 40, done=False)
    cache = FinishedCache()
    load_pipeline_page(data, cache=cache)
    pipeline.update(complete_at=stamp(T0 + 100), complete=True, results=SUCCESS)
    pipeline["_props"]["check_results"] = {"lint": "success"}
    (row,) = load_pipeline_page(data, cache=cache).rows
    assert row.pipeline.prop("check_results") == {"lint": "success"}


def test_pipeline_html_escapes_and_links_for_both_places():
    data = seeded()
    pipeline = data.pipeline(T0, EVIL, branch=EVIL, results={"lint": FAILURE}, pipeline_file=EVIL)
    job(data, "lint", pipeline, FAILURE, failing="flake8")
    data.builds[-1]["_steps"][1]["name"] = EVIL
    page = load_pipeline_page(data)
    for links, prefix in ((EMBEDDED, "#/builders/"), (STANDALONE, "../../../#/builders/")):
        html = pipelines_page(page, links, T0 + 200)
        assert "<script>" not in html and "&lt;script&gt;" in html
        assert f'href="{prefix}2/builds/1"' in html and f'href="{prefix}1/builds/1"' in html
        assert "failed step: &lt;script&gt;" in html
    assert pipelines_page(page, EMBEDDED, T0).startswith("<style>")
    assert pipelines_page(page, STANDALONE, T0).startswith("<!doctype html>")
    assert "No pipeline has run yet" in pipelines_page(load_pipeline_page(seeded()), EMBEDDED, T0)


def test_pager_links_leave_the_web_ui_for_the_standalone_pages():
    data = seeded()
    for i in range(60):
        data.pipeline(T0 + i, f"{i:040x}")
    html = pipelines_page(load_pipeline_page(data, page=1), EMBEDDED, T0)
    assert 'href="plugins/wsgi_dashboards/pipelines/?page=2"' in html and "page 1 of 3 (60 pipeline builds)" in html
    html = pipelines_page(load_pipeline_page(data, page=2), STANDALONE, T0)
    assert 'href="../pipelines/?page=1"' in html and 'href="../pipelines/?page=3"' in html


# --- deploy history ----------------------------------------------------------------------------
def history_of(data):
    return load_deploy_history(data, ["production", "staging"], {"production": "main", "staging": "develop"})


def test_live_is_the_newest_build_that_changed_the_environment():
    data = seeded()
    a, b, c = (data.pipeline(T0 + 1000 * i, ch * 40) for i, ch in enumerate("abc"))
    deploy(data, a, deploy_id="dep-a", gate_pipeline="pipeline #1")
    deploy(data, b, FAILURE, deploy_id="dep-b", deploy_started=True, deploy_failure="health check failed",
           rolled_back_to="a" * 40, rollback_health="healthy", rollback_deploy_id="dep-a2")  # fmt: skip
    deploy(data, c, FAILURE, deploy_id=None, deploy_failure="pipeline gate refused")  # never touched production
    production, staging = history_of(data).environments
    live = production.live
    assert (live.revision, live.deploy_id, live.by) == (
        "a" * 40,
        "dep-a2",
        "automatic rollback in deploy-production #2",
    )
    assert [e.verification for e in production.entries] == [
        "not deployed: pipeline gate refused",
        "health check failed; rolled back to aaaaaaa (healthy)",
        "live, healthy, smoke tests passed",
    ]
    assert production.entries[-1].who == "deploy gate of pipeline #1" and production.entries[-1].gate_pipeline == 1
    assert staging.live.revision is None and staging.live.note == "nothing deployed yet"


def test_an_unhealthy_rollback_leaves_live_unknown_and_warnings_count_as_live():
    data = seeded()
    a, b = data.pipeline(T0, "a" * 40), data.pipeline(T0 + 1000, "b" * 40)
    deploy(data, a, WARNINGS, owner="priya", gate_override="overridden", reason="hotfix")
    deploy(data, b, FAILURE, deploy_started=True, deploy_failure="smoke tests failed", rolled_back_to="a" * 40,
           rollback_health="unhealthy")  # fmt: skip
    production = history_of(data).environments[0]
    assert production.live.revision is None and "did not end healthy" in production.live.note
    assert production.entries[1].who == "priya (forced, gate overridden)" and production.entries[1].reason == "hotfix"
    html = deploys_page(history_of(data), EMBEDDED, T0 + 5000)
    assert "what is live is unknown" in html and "hotfix" in html


def test_rollback_target_is_the_good_deploy_of_another_revision():
    data = seeded()
    a, b = data.pipeline(T0, "a" * 40), data.pipeline(T0 + 1000, "b" * 40)
    deploy(data, a, deploy_id="dep-a")
    deploy(data, b, deploy_id="dep-b1")
    deploy(data, b, deploy_id="dep-b2")
    production = history_of(data).environments[0]
    assert production.live.deploy_id == "dep-b2" and production.rollback_target.deploy_id == "dep-a"
    html = deploys_page(history_of(data), STANDALONE, T0 + 5000)
    assert "A forced rollback would go back to <code>aaaaaaa</code>" in html
    assert 'href="../../../#/builders/6/builds/3"' in html and "dep-b2" in html
    assert [len(r) for r in data.rounds[-2:]] == [1, 8]  # builders; 4 reads per environment


# --- trends ------------------------------------------------------------------------------------
def test_trends_series_failure_rates_and_push_to_live():
    data = seeded()
    for i in range(4):
        pipeline = data.pipeline(T0 + 1000 * i, f"{i:040x}", results={"lint": FAILURE} if i == 1 else None)
        job(data, "lint", pipeline, FAILURE if i == 1 else SUCCESS, seconds=10 + i)
        job(data, "test", pipeline, CANCELLED if i == 2 else SUCCESS, props={"coverage": 80.0 + i})
        if i != 1:
            deploy(data, pipeline)
    trends = load_trends(data, last=30, now=T0 + 10000)
    assert trends.labels == ("#1", "#2", "#3", "#4") and trends.wall == (100.0,) * 4
    assert trends.job_durations["lint"] == (10.0, 11.0, 12.0, 13.0)
    assert trends.coverage == {"test": (80.0, 81.0, 82.0, 83.0)}
    assert trends.failure_rates == (("lint", 1, 4), ("test", 0, 3))  # a cancelled run says nothing
    assert [(p.label, p.seconds, p.environment) for p in trends.push_to_live] == [
        ("#1", 195.0, "production"), ("#3", 195.0, "production"), ("#4", 195.0, "production")
    ]  # fmt: skip
    html = trends_page(trends, 30, EMBEDDED)
    for title in ("Pipeline wall time", "lint: duration", "Coverage per revision", "Failure rate per job",
                  "Push to deploy live"):  # fmt: skip
        assert title in html
    assert html.count("<svg") == 6


def test_trends_cache_settled_pipelines_only():
    data = seeded()
    old = data.pipeline(T0, "a" * 40)
    job(data, "test", old, props={"coverage": 75.5})
    recent = data.pipeline(T0 + 7000, "b" * 40)
    cache = FinishedCache()
    load_trends(data, cache=cache, now=T0 + 7200)
    data.rounds.clear()
    job(data, "test", recent, props={"coverage": 90.0})  # starts after the first look: must be seen
    trends = load_trends(data, cache=cache, now=T0 + 7200)
    assert [len(r) for r in data.rounds] == [2, 1, 1]  # the recent pipeline's children, its new coverage
    assert trends.coverage == {"test": (75.5, 90.0)}


# --- charts ------------------------------------------------------------------------------------
def parse(svg):
    return ElementTree.fromstring(svg)


def test_charts_are_well_formed_escaped_svg():
    line = charts.line_chart(EVIL, ["#1", "#2", "#3"], [charts.Series(EVIL, (1.0, None, 3.0))], unit="s")
    bars = charts.bar_chart("bars", [charts.Bar(EVIL, 5.0, href="#/builders/1/builds/1")], unit="%")
    rows = charts.hbar_chart("rates", [charts.Bar("lint", 25.0)], unit="%", y_max=100)
    for svg in (line, bars, rows, charts.empty_chart("t", EVIL)):
        assert parse(svg).tag.endswith("svg") and "<script>" not in svg
    path = parse(line).find("{http://www.w3.org/2000/svg}path").get("d")
    assert path.count("M") == 2 and "L" not in path  # the None leaves a gap
    assert "no data yet" in charts.line_chart("t", [], [])


def test_duration_and_scale_texts():
    assert [charts.duration_text(s) for s in (None, 4.25, 42, 185, 3725)] == ["—", "4.2s", "42s", "3m 05s", "1h 02m"]
    assert charts.nice_scale(87) == (100.0, 25.0) and charts.value_text(12.5, "%") == "12.5%"


# --- the WSGI apps and the menu ----------------------------------------------------------------
class Response:
    def __init__(self, app, path, query="", **headers):
        environ = {"PATH_INFO": path, "QUERY_STRING": query, "REQUEST_METHOD": headers.pop("method", "GET"), **headers}
        self.body = b"".join(app(environ, self.start))

    def start(self, status, headers):
        self.status, self.headers = int(status.split()[0]), dict(headers)


def fake_app(view, data):
    return DashboardApp(view, source_factory=lambda api: data, clock=lambda: T0 + 5000)


def test_routes_of_a_dashboard():
    data = seeded()
    data.pipeline(T0, "a" * 40)
    app = fake_app("pipelines", data)
    assert (Response(app, "").status, Response(app, "").headers["Location"]) == (301, "pipelines/")
    embedded = Response(app, "/index.html")
    assert embedded.status == 200 and embedded.body.startswith(b"<style>")
    opened = Response(app, "/index.html", HTTP_SEC_FETCH_DEST="document")
    assert (opened.status, opened.headers["Location"]) == (302, "./")
    page = Response(app, "/", "page=abc")
    assert page.status == 200 and page.body.startswith(b"<!doctype html>") and b"page 1 of 1" in page.body
    assert Response(app, "/elsewhere").status == 404 and Response(app, "/", method="POST").status == 405
    for view in ("deploys", "trends"):
        assert Response(fake_app(view, data), "/").status == 200


def test_a_failing_page_says_so():
    class Broken:
        def fetch(self, queries):
            raise RuntimeError("database gone")

    response = Response(DashboardApp("trends", source_factory=lambda api: Broken()), "/")
    assert response.status == 500 and b"could not be built" in response.body and b"database gone" not in response.body


@pytest.fixture
def settings(tmp_path):
    return load_settings({"PIPELINE_MASTER_BASEDIR": str(tmp_path / "m"), "PIPELINE_SECRETS_DIR": str(tmp_path / "s")})


def test_pipelines_come_first_in_the_menu_and_private_views_need_a_login(settings):
    entries = make_plugins(settings)["wsgi_dashboards"]
    assert [e["name"] for e in sorted(entries, key=lambda e: e["order"])] == [
        "pipelines",
        "deploys",
        "trends",
        "reports",
    ]
    assert min(e["order"] for e in entries) < 1  # the web UI's Home is order 1
    assert all(isinstance(e["app"], DashboardApp) for e in entries[:3])
    caches = {id(e["app"].cache) for e in entries[:3]}
    assert len(caches) == 1
    private = dataclasses.replace(settings, www=dataclasses.replace(settings.www, public_view=False))
    guarded = make_plugins(private)["wsgi_dashboards"]
    assert all(isinstance(e["app"], LoggedInOnly) for e in guarded)
    assert Response(guarded[0]["app"], "/index.html").status == 403
    assert [e["name"] for e in dashboard_entries(settings, lambda app: app)] == ["pipelines", "deploys", "trends"]
