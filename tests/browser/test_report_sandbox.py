"""Reports never run in the web UI's origin (issue 21, item 1): the security probe, in headless Chromium
against a real master (htpasswd login, admins = [admin]).

A branch's report is put where `PublishReports` uploads it (`<basedir>/reports/lint/1/`), so the
reports dashboard serves exactly what it serves for a job:
- `probe.html` and `probe.svg` carry the probe's script: read `document.cookie`, then
  `POST /api/v2/forceschedulers/<rollback-production's>` with the admin's cookie and the body the
  web UI sends to force a build, then say what it got at `.../probe-said?...` (a request this test
  sees). The logged-in admin opens each: no build is requested and nothing is read;
- the same call from the web UI's own page (the admin's session, the UI's origin) forces the build:
  the session still works where it should, and the React UI shows the admin logged in;
- the session cookie is HttpOnly and SameSite=Lax: no script, even in the UI's origin, reads it;
- coverage.py's HTML report (stylesheet, script, images beside it) still shows with its stylesheet;
- bad report paths (`%00`, control characters, overlong names, invalid UTF-8) answer 404.
With GitHub OAuth (a GitHub stand-in on another site, 127.0.0.1, while the UI is at localhost) a
user still logs in: the cookie set on GitHub's cross-site redirect back is kept and sent.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

import pytest

from harness import free_port, make_service_repo
from www_support import (
    ADMIN_PASSWORD,
    ADMIN_USER,
    Client,
    api,
    basic,
    builder_ids,
    default_secrets,
    force_scheduler_for,
    start_www_master,
)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]

REPORTS = "plugins/wsgi_dashboards/reports/"
TARGET = "rollback-production"  # the builder the probe tries to force (a deploy would work the same)
# what Chromium logs when a document's policy forbids its scripts (the page loaded, the script did not run)
BLOCKED = "Blocked script execution"
SCRIPT = """
(async () => {
  const said = {};
  try { said.cookie = document.cookie; } catch (e) { said.cookie = 'refused: ' + e.name; }
  try {
    const answer = await fetch('/api/v2/forceschedulers/SCHEDULER', {method: 'POST', credentials: 'include',
      headers: {'Content-Type': 'application/json'}, body: JSON.stringify(BODY)});
    said.force = answer.status + ' ' + (await answer.text()).slice(0, 300);
  } catch (e) { said.force = 'refused: ' + e.name; }
  await fetch('/REPORTSprobe-said?' + encodeURIComponent(JSON.stringify(said)));
})();
"""


def base_url(port: int) -> str:
    # the master's buildbotURL says localhost: the login redirect and the session cookie stay on one host
    return f"http://localhost:{port}/"


def force_body(master, builder: str, reason: str) -> dict:
    """The JSON-RPC call the web UI posts to force a build (its fields' defaults, the builder, a reason)."""
    scheduler = api(master, f"forceschedulers/{force_scheduler_for(master, builder)}")["forceschedulers"][0]
    params: dict = {}

    def walk(fields: list) -> None:
        for field in fields:
            if field.get("fields"):
                walk(field["fields"])
            elif field.get("fullName") and field.get("default") is not None:
                params[field["fullName"]] = field["default"]

    walk(scheduler["all_fields"])
    params.update(builderid=str(builder_ids(master)[builder]), reason=reason)
    return {"id": 1, "jsonrpc": "2.0", "method": "force", "params": params}


def force_from(page, master, reason: str) -> tuple[int, str]:
    """The force call made by a script of `page` (the web UI's own page here): (status, body)."""
    return page.evaluate(
        """async ([url, body]) => {
            const answer = await fetch(url, {method: 'POST', credentials: 'include',
                headers: {'Content-Type': 'application/json'}, body: JSON.stringify(body)});
            return [answer.status, await answer.text()];
        }""",
        [f"/api/v2/forceschedulers/{force_scheduler_for(master, TARGET)}", force_body(master, TARGET, reason)],
    )


def forced(master, reason: str) -> list[dict]:
    return [b for b in api(master, "buildsets")["buildsets"] if reason in (b.get("reason") or "")]


@pytest.fixture(scope="module")
def master(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report-sandbox")
    running = start_www_master(tmp, make_service_repo(tmp / "repo"), default_secrets())
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def reports(master) -> str:
    """A branch's reports, where the reports dashboard serves them from; the URL of their directory."""
    build = master.basedir / "reports" / "lint" / "1"
    build.mkdir(parents=True)
    scheduler = force_scheduler_for(master, TARGET)
    body = json.dumps(force_body(master, TARGET, "report-probe"))
    script = SCRIPT.replace("SCHEDULER", scheduler).replace("BODY", body).replace("REPORTS", REPORTS)
    (build / "probe.html").write_text(f"<!doctype html><title>coverage</title><p>a report</p><script>{script}</script>")
    (build / "probe.svg").write_text(
        f'<svg xmlns="http://www.w3.org/2000/svg" width="40" height="40"><script><![CDATA[{script}]]></script></svg>'
    )
    coverage_html(master.basedir.parent / "coverage", build / "htmlcov")
    return base_url(master.www_port) + REPORTS + "lint/1/"


def admin_context(chromium, master):
    """A Chromium profile with the admin logged in, as the web UI does it (`/auth/login`)."""
    context = chromium(http_credentials={"username": ADMIN_USER, "password": ADMIN_PASSWORD})
    page = context.new_page()
    page.goto(base_url(master.www_port) + "auth/login")
    page.goto(base_url(master.www_port) + "#/builders")
    page.locator(".bb-loginbar-dropdown-nav").get_by_text(ADMIN_USER).wait_for()
    return context, page


@pytest.mark.parametrize("report", ["probe.html", "probe.svg"])
def test_a_report_cannot_act_as_the_admin_who_opens_it(master, reports, chromium, report):
    context, _ = admin_context(chromium, master)
    said, posts, console = [], [], []

    def seen(request) -> None:
        if "probe-said?" in request.url:  # what the script got, had it run
            said.append(unquote(request.url.split("probe-said?", 1)[1]))
        elif request.method == "POST":
            posts.append(request.url)

    context.on("request", seen)
    page = context.new_page()
    page.on("console", lambda message: console.append(message.text))
    page.goto(reports + report)
    for _ in range(150):  # Playwright delivers the events while it waits (time.sleep would hold them back)
        if said or [m for m in console if BLOCKED in m]:
            break
        page.wait_for_timeout(200)
    else:
        raise AssertionError(f"the script of {report} neither ran nor was blocked in 30 s: {console}")
    assert not said, f"the report's script ran with the admin's session: {said}"
    assert not posts, f"the report posted: {posts}"
    assert not forced(master, "report-probe"), "the report's script forced a build"


def set_cookies(headers: list) -> list[str]:
    return [value for name, value in headers if name.lower() == "set-cookie"]


def test_the_admin_session_still_forces_from_the_ui_and_no_script_reads_it(master, reports, chromium):
    _, _, anonymous = Client(master).request("GET", "")  # the first visit: Twisted's anonymous session
    credentials = {"Authorization": basic(ADMIN_USER, ADMIN_PASSWORD)}
    _, _, login = Client(master).request("GET", "auth/login", headers=credentials)
    for cookie in set_cookies(anonymous) + set_cookies(login):
        assert "; HttpOnly" in cookie and "; SameSite=lax" in cookie, cookie
    assert set_cookies(anonymous) and set_cookies(login)
    context, page = admin_context(chromium, master)
    [cookie] = [c for c in context.cookies(base_url(master.www_port)) if c["name"].startswith("TWISTED_SESSION")]
    assert (cookie["httpOnly"], cookie["sameSite"]) == (True, "Lax"), cookie
    assert "TWISTED_SESSION" not in page.evaluate("document.cookie")
    page.goto(base_url(master.www_port) + "#/reports")  # the UI fetches the dashboard and shows it in its page
    page.get_by_role("link", name="lint", exact=True).wait_for()
    status, text = force_from(page, master, "admin-control")
    assert status == 200 and '"result"' in text, (status, text)
    assert forced(master, "admin-control"), "the UI's own call did not force a build"


def coverage_html(work: Path, destination: Path) -> None:
    """coverage.py's HTML report (its stylesheet, script and images beside the pages) of a module
    with one line not run."""
    work.mkdir()
    (work / "mod.py").write_text("def f(x):\n    if x:\n        return 1\n    return 2\n\n\nf(1)\n")
    for command in (["run", "mod.py"], ["html", "-q", "-d", str(destination)]):
        subprocess.run([sys.executable, "-m", "coverage", *command], cwd=work, check=True, timeout=120)


def test_a_coverage_report_keeps_its_stylesheet(master, reports, chromium):
    _, page = admin_context(chromium, master)
    page.goto(reports + "htmlcov/")
    page.get_by_role("link", name="mod.py").wait_for()
    assert page.locator("#index th#coverage").evaluate("th => getComputedStyle(th).fontStyle") == "italic"  # its CSS
    page.goto(reports + "htmlcov/mod_py.html")
    missed = page.locator("#source p.mis .t").first
    assert missed.inner_text().strip() == "return 2"
    assert missed.evaluate("t => getComputedStyle(t).borderLeftColor") == "rgb(255, 0, 0)"  # the missed line shows


@pytest.mark.parametrize(
    "path", ["%00", "lint/1/probe%00.html", "%2500", "%01", "a%0Ab", "%7F", "%ff", "%c3%28", "lint/%ed%a0%80",
             "lint/1/" + "x" * 300, "/".join(["y" * 200] * 25)],
    ids=lambda path: path[:30],
)  # fmt: skip
def test_bad_report_paths_answer_404(master, path):
    status, body, headers = Client(master).request("GET", REPORTS + path)
    assert status == 404, (status, body[:300])
    assert ("X-Content-Type-Options", "nosniff") in headers


# --- GitHub OAuth through a stand-in on another site --------------------------------------------
class GitHubOAuth(BaseHTTPRequestHandler):
    """GitHub's OAuth pages and the v3 API calls Buildbot's GitHubAuth makes, for user `octo`."""

    def do_GET(self):
        url = urlsplit(self.path)
        if url.path == "/login/oauth/authorize":  # the user agrees at once
            query = parse_qs(url.query)
            back = {"code": "the-code", **({"state": query["state"][0]} if "state" in query else {})}
            self.send_response(302)
            self.send_header("Location", f"{query['redirect_uri'][0]}?{urlencode(back)}")
            self.end_headers()
            return
        answers = {"/api/v3/user": {"login": "octo", "name": "Octo Cat", "email": None},
                   "/api/v3/user/emails": [{"email": "octo@example.com", "primary": True}],
                   "/api/v3/user/orgs": []}  # fmt: skip
        self._json(answers.get(url.path), 200 if url.path in answers else 404)

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._json({"access_token": "the-token", "token_type": "bearer"} if self.path == "/login/oauth/access_token"
                   else None, 200 if self.path == "/login/oauth/access_token" else 404)  # fmt: skip

    def _json(self, value, status: int) -> None:
        body = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_github_oauth_login_still_works(tmp_path, chromium):
    github = ThreadingHTTPServer(("127.0.0.1", free_port()), GitHubOAuth)
    threading.Thread(target=github.serve_forever, daemon=True).start()
    secrets = {"github_oauth_client_id": "client-id", "github_oauth_client_secret": "client-secret"}
    env = {"PIPELINE_WWW_ADMINS": "octo", "PIPELINE_GITHUB_API_URL": f"http://127.0.0.1:{github.server_port}/api/v3"}
    master = start_www_master(tmp_path, make_service_repo(tmp_path / "repo"), secrets, env=env)
    try:
        page = chromium().new_page()
        page.goto(base_url(master.www_port) + "auth/login?redirect=/builders")
        assert page.url.startswith(base_url(master.www_port)), page.url  # back from GitHub to the web UI
        page.locator(".bb-loginbar-dropdown-nav").get_by_text("Octo Cat").wait_for()
        status, text = force_from(page, master, "oauth")
        assert status == 200 and '"result"' in text, (status, text)
    finally:
        master.stop()
        github.shutdown()
        github.server_close()
