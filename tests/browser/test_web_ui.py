"""The web UI in headless Chromium against a real master (only `lint` in the pipeline, so a
pipeline finishes quickly):

- an anonymous visitor sees the builders and a finished pipeline, and the force button of
  `deploy-production` does not work for them (the form says admins only, no build is requested);
- an admin logs in, forces `rollback-production` with a reason, and lands on the new build.

Chromium runs from the Debian package (`/usr/bin/chromium`) with a fresh profile; every request
to a host other than the master's is aborted and reported. Screenshots go to
`test-artifacts/browser/`.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import BrowserContext

from harness import ROOT, commit_file, make_service_repo, wait_for, wait_poller_ready
from www_support import ADMIN_PASSWORD, ADMIN_USER, api, builder_ids, default_secrets, start_www_master

pytestmark = [pytest.mark.browser, pytest.mark.timeout(900)]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = ROOT / "test-artifacts" / "browser"
LOCAL_HOSTS = ("localhost", "127.0.0.1")


@pytest.fixture(scope="module")
def master(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("browser")
    repo = make_service_repo(tmp / "repo")
    running = start_www_master(tmp, repo, default_secrets())
    try:
        wait_poller_ready(running)
        commit_file(repo, "app/browser_test.py", "VALUE = 1\n", "a commit for the browser test")
        wait_for(
            "a finished pipeline build",
            lambda: [b for b in api(running, "builders/pipeline/builds")["builds"] if b["complete"]],
            600,
            interval=2,
        )
        yield running
    finally:
        running.stop()


@pytest.fixture
def browser(playwright, master, tmp_path):
    """A fresh Chromium profile; `browser(credentials=...)` opens a context, closed after the test."""
    contexts: list[BrowserContext] = []
    outside: list[str] = []

    def open_context(credentials: tuple[str, str] | None = None):
        profile = tmp_path / f"profile-{len(contexts)}"
        options = {"http_credentials": {"username": credentials[0], "password": credentials[1]}} if credentials else {}
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True, **options
        )

        def only_local(route):
            if route.request.url.split("/")[2].rsplit(":", 1)[0] in LOCAL_HOSTS:
                route.continue_()
            else:
                outside.append(route.request.url)
                route.abort()

        context.route("**/*", only_local)
        contexts.append(context)
        return context

    yield open_context
    for context in contexts:
        context.close()
    assert not outside, f"the UI tried to reach other hosts: {outside}"


def base_url(master) -> str:
    # the master's buildbotURL says localhost: the login redirect and the session cookie stay on one host
    return f"http://localhost:{master.www_port}/"


def screenshot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_anonymous_sees_builders_and_a_finished_pipeline_but_cannot_deploy(master, browser):
    ids = builder_ids(master)
    page = browser().new_page()
    page.goto(base_url(master) + "#/builders")
    for name in ("pipeline", "lint", "deploy-production", "rollback-production"):
        page.get_by_role("link", name=name, exact=True).first.wait_for()

    build = api(master, "builders/pipeline/builds")["builds"][0]
    assert build["complete"]
    page.goto(base_url(master) + f"#/builders/{ids['pipeline']}/builds/{build['number']}")
    page.get_by_text("Finished", exact=False).first.wait_for()
    page.get_by_text(build["state_string"], exact=False).first.wait_for()
    screenshot(page, "anonymous-finished-pipeline")

    # the finished pipeline's gate may have asked for a deploy (the file's verdict jobs passed): only a
    # request made by the click below would be the anonymous visitor's
    before = api(master, "buildrequests", builderid=ids["deploy-production"])["buildrequests"]
    page.goto(base_url(master) + f"#/builders/{ids['deploy-production']}")
    assert page.locator(".bb-loginbar-dropdown-nav").inner_text().strip() == "Anonymous"
    page.get_by_role("button", name="Deploy to production").click()
    form = page.locator(".modal-dialog")
    form.locator("[data-bb-test-id=force-field-reason]").fill("anonymous visitor tries to deploy")
    form.get_by_role("button", name="Start build").click()
    form.get_by_text("you need to have role 'admins'").wait_for()
    screenshot(page, "anonymous-deploy-production-refused")
    requests = api(master, "buildrequests", builderid=ids["deploy-production"])["buildrequests"]
    assert requests == before, "an anonymous force created a deploy build request"


def test_admin_logs_in_and_forces_a_rollback_with_a_reason(master, browser):
    ids = builder_ids(master)
    reason = "browser test: roll production back"
    page = browser(credentials=(ADMIN_USER, ADMIN_PASSWORD)).new_page()
    page.goto(base_url(master) + "auth/login")
    page.goto(base_url(master) + f"#/builders/{ids['rollback-production']}")
    page.locator(".bb-loginbar-dropdown-nav").get_by_text(ADMIN_USER).wait_for()

    page.get_by_role("button", name="Roll back production").click()
    form = page.locator(".modal-dialog")
    form.locator("[data-bb-test-id=force-field-reason]").fill(reason)
    form.get_by_role("button", name="Start build").click()
    page.wait_for_url(f"**/#/builders/{ids['rollback-production']}/builds/*", timeout=60_000)
    page.get_by_text("rollback-production", exact=False).first.wait_for()

    def forced_build():
        builds = api(master, "builders/rollback-production/builds", property="*")["builds"]
        return next((b for b in builds if b["properties"].get("reason", [None])[0] == reason), None)

    build = wait_for("the forced rollback build", forced_build, 60)
    assert page.url.endswith(f"/builds/{build['number']}")
    assert build["properties"]["owner"][0] == ADMIN_USER
    wait_for(
        "the rollback build to finish",
        lambda: api(master, f"builds/{build['buildid']}")["builds"][0]["complete"],
        120,
    )
    page.get_by_text("Finished", exact=False).first.wait_for()
    screenshot(page, "admin-forced-rollback-production")
