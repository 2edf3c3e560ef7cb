"""The dashboards in headless Chromium against a real master, after real pipelines and a real deploy.

One master (only `lint` in the pipeline, `[checks] required = ["lint"]`, production deploying to
the Render stand-in) builds a green commit, which the gate deploys to production, and then a
commit lint fails on. Then, in the web UI:
- Pipelines is the first menu entry; its page shows both revisions' rows with every job of their
  pipeline (result, duration, a link to the build that opens it in the web UI), the failed cell
  names the build's first FAILURE step, the green row shows the gate's decision and the deploy
  (environment, result, Render's deploy id); the standalone page does too;
- Deploys shows what production runs now (the green revision, its deploy id) and the deploy;
- Trends draws its charts (inline SVG) without a JavaScript error;
- Reports lists the builders (the page the menu entry used to leave loading).
Screenshots go to `test-artifacts/browser/dashboard-*.png`.
"""

from __future__ import annotations

import re

import pytest

from deploy_story import stand_in_secrets, stand_in_settings
from harness import ROOT, commit_file, make_service_repo, running, wait_for
from render_standin import RenderStandin
from www_support import api, builder_ids, start_www_master

pytestmark = [pytest.mark.browser, pytest.mark.timeout(1500)]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]  # fmt: skip
ARTIFACTS = ROOT / "test-artifacts" / "browser"
LOCAL_HOSTS = ("localhost", "127.0.0.1")
BUILD_TIMEOUT = 600
# Buildbot's own page asks every UI plugin for styles.css / scripts.js; those without one answer 404
KNOWN_404 = ("/styles.css", "/badges/scripts.js")


def prop(build: dict, name: str):
    return build["properties"].get(name, [None])[0]


class Story:
    """The master, the stand-in and what the fixture built: a green revision (deployed) and a red one."""

    good: str
    good_pipeline: dict
    deploy: dict
    bad: str
    bad_pipeline: dict

    def __init__(self, master, render):
        self.master, self.render = master, render
        self.ids = builder_ids(master)

    def deploy_of(self, revision: str) -> dict:
        def done():
            found = [
                b for b in self.master.finished_builds("deploy-production") if prop(b, "deploy_revision") == revision
            ]
            return found[-1] if found else None

        return wait_for(f"the deploy of {revision[:7]}", done, BUILD_TIMEOUT, 2)

    def children(self, pipeline: dict) -> list[dict]:
        return api(self.master, f"builds/{pipeline['buildid']}/triggered_builds")["builds"]


@pytest.fixture(scope="module")
def story(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dashboard")
    repo = make_service_repo(tmp / "repo")
    render = RenderStandin(build_seconds=1.0, update_seconds=0.5).start()
    with running(
        lambda: start_www_master(tmp, repo, stand_in_secrets(render), env=stand_in_settings(render)), render
    ) as master:
        the_story = Story(master, render)
        the_story.good = commit_file(repo, "app/dashboard_note.py", '"""A green commit."""\n', "green")
        the_story.good_pipeline = master.pipeline_of(the_story.good)
        assert the_story.good_pipeline["results"] == 0, the_story.good_pipeline["state_string"]
        the_story.deploy = the_story.deploy_of(the_story.good)
        assert the_story.deploy["results"] == 0, the_story.deploy["state_string"]
        the_story.bad = commit_file(repo, "app/dashboard_broken.py", "import os\n", "lint fails (F401)")
        the_story.bad_pipeline = master.pipeline_of(the_story.bad)
        assert the_story.bad_pipeline["results"] == 2
        yield the_story


@pytest.fixture
def page(playwright, story, tmp_path):
    """A page in a fresh profile that records console errors, page errors and outside requests.

    `page.errors` is checked after each dashboard page (`no_errors`), not after Buildbot's own build
    page, which in 4.3 logs errors of its own (a 404 for `//icon.png`, a TypeError)."""
    context = playwright.chromium.launch_persistent_context(
        str(tmp_path / "profile"), executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True,
        viewport={"width": 1440, "height": 1000},
    )  # fmt: skip
    outside, errors = [], []

    def only_local(route):
        if route.request.url.split("/")[2].rsplit(":", 1)[0] in LOCAL_HOSTS:
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    def console(message):
        where = (message.location or {}).get("url", "")
        if message.type == "error" and not where.endswith(KNOWN_404):
            errors.append(f"{message.text} ({where})")

    context.route("**/*", only_local)
    tab = context.new_page()
    tab.on("console", console)
    tab.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
    tab.errors = errors
    yield tab
    context.close()
    assert not outside, f"the UI tried to reach other hosts: {outside}"


def no_errors(page) -> None:
    page.wait_for_timeout(500)  # late errors of the page just drawn
    assert not page.errors, f"JavaScript errors: {page.errors}"


def base_url(story) -> str:
    return f"http://localhost:{story.master.www_port}/"


def screenshot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def failing_step(story, build: dict) -> str:
    steps = sorted(story.master.steps(build), key=lambda s: s["number"])
    return next(s["name"] for s in steps if s["results"] == 2)


def check_rows(story, table) -> None:
    """Both revisions' rows: every job of their pipeline with its result and duration; the deploy."""
    for pipeline in (story.good_pipeline, story.bad_pipeline):
        row = table.locator(f'tr[data-revision="{prop(pipeline, "revision")}"]')
        row.wait_for()
        names = {v: k for k, v in story.ids.items()}
        children = story.children(pipeline)
        assert prop(pipeline, "pipeline_jobs"), "the pipeline defined no job"
        for name in prop(pipeline, "pipeline_jobs"):
            (build,) = [b for b in children if names[b["builderid"]] == name]
            result = ["success", "warnings", "failure"][build["results"]]
            link = row.locator(f'a[href$="#/builders/{build["builderid"]}/builds/{build["number"]}"]')
            assert link.inner_text() == result
            cell = link.locator("xpath=..")
            assert re.fullmatch(r"[0-9.]+s|[0-9]+m [0-9]{2}s", cell.locator(".nci-dur").inner_text())
            if build["results"] == 2:
                assert cell.locator(".nci-fail").inner_text() == f"failed step: {failing_step(story, build)}"
    good = table.locator(f'tr[data-revision="{story.good}"]')
    deploy_id = prop(story.deploy, "render_deploy_id")
    assert deploy_id and deploy_id in good.inner_text() and "production" in good.inner_text()
    assert "required check" in good.inner_text() and "deploy of" in good.inner_text()  # the gate's decision
    bad = table.locator(f'tr[data-revision="{story.bad}"]')
    assert "not deploying: lint: failure" in bad.inner_text()


def test_the_web_ui_opens_on_the_pipeline_dashboard(story, page):
    page.goto(base_url(story))
    page.wait_for_url("**/#/pipelines")
    page.locator(".bb-wsgi-dashboard-view table.nci-pipelines").wait_for()
    screenshot(page, "home-is-the-dashboard")
    no_errors(page)


def test_pipelines_come_first_and_show_every_job_the_gate_and_the_deploy(story, page):
    page.goto(base_url(story))
    first = page.locator("a.bb-sidebar-button").first
    first.wait_for()
    assert (first.inner_text().strip(), first.get_attribute("href")) == ("Pipelines", "#/pipelines")
    page.goto(base_url(story) + "#/pipelines")
    table = page.locator(".bb-wsgi-dashboard-view table.nci-pipelines")
    table.wait_for()
    check_rows(story, table)
    screenshot(page, "dashboard-pipelines")
    no_errors(page)
    lint = story.ids["lint"]
    page.locator(f'tr[data-revision="{story.bad}"] a[href*="#/builders/{lint}/builds/"]').first.click()
    page.wait_for_url(f"**/#/builders/{lint}/builds/*")
    page.get_by_text("Finished", exact=False).first.wait_for()


def test_the_standalone_pipelines_page_links_back_into_the_web_ui(story, page):
    page.goto(base_url(story) + "plugins/wsgi_dashboards/pipelines/")
    table = page.locator("table.nci-pipelines")
    table.wait_for()
    check_rows(story, table)
    no_errors(page)
    page.locator(f'tr[data-revision="{story.good}"] td').first.locator("a").first.click()
    page.wait_for_url(f"**/#/builders/{story.ids['pipeline']}/builds/{story.good_pipeline['number']}")


def test_deploys_show_what_is_live_and_the_deploy(story, page):
    page.goto(base_url(story) + "#/deploys")
    live = page.locator('.bb-wsgi-dashboard-view .nci-live[data-environment="production"]')
    live.wait_for()
    text = live.inner_text()
    assert story.good[:7] in text and prop(story.deploy, "render_deploy_id") in text, text
    row = page.locator(f'tr[data-buildid="{story.deploy["buildid"]}"]')
    assert "success" in row.inner_text() and "live, healthy, smoke tests passed" in row.inner_text()
    assert f"pipeline #{story.good_pipeline['number']}" in row.inner_text()
    screenshot(page, "dashboard-deploys")
    no_errors(page)


def test_trend_charts_render_without_javascript_errors(story, page):
    page.goto(base_url(story) + "#/trends")
    charts = page.locator(".bb-wsgi-dashboard-view svg.nci-chart")
    charts.first.wait_for()
    assert charts.count() >= 5
    titles = " ".join(page.locator(".bb-wsgi-dashboard-view .nci-chart-title").all_text_contents())
    for title in ("Pipeline wall time", "lint: duration", "Failure rate per job", "Push to deploy live"):
        assert title in titles
    box = charts.first.bounding_box()
    assert box and box["width"] > 300 and box["height"] > 100
    assert page.locator("svg.nci-chart rect title").count() >= 2  # a bar per pipeline, with its tooltip
    screenshot(page, "dashboard-trends")
    no_errors(page)
    page.goto(base_url(story) + "plugins/wsgi_dashboards/trends/?last=10")
    page.locator("svg.nci-chart").first.wait_for()
    no_errors(page)


def test_reports_page_shows_in_the_web_ui(story, page):
    page.goto(base_url(story) + "#/reports")
    page.locator(".bb-wsgi-dashboard-view .nci h1").filter(has_text="Reports").wait_for()
    assert page.locator('.bb-wsgi-dashboard-view a[href="plugins/wsgi_dashboards/reports/lint/"]').count() <= 1
    screenshot(page, "dashboard-reports")
    no_errors(page)
