"""ReportsApp, the read-only WSGI app behind the "reports" dashboard: files, listings that say what each
report is (coverage %, JUnit counts, SARIF findings by severity), no way out of its root."""

from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import unquote_to_bytes

import pytest

from namaskah_ci.dashboard.headers import CSP
from namaskah_ci.dashboard.reports_app import ReportsApp


def path_info(url_path: str) -> str:
    """PATH_INFO as Twisted's WSGI container hands it over: each segment percent-decoded, bytes as
    ISO-8859-1 (PEP 3333)."""
    return b"/".join(unquote_to_bytes(part) for part in url_path.split("/")).decode("latin-1")


class Response:
    def __init__(self, app: ReportsApp, path: str, query: str = "", **headers: str):
        """`path`: as a browser sends it (percent-encoded)."""
        self.status = ""
        self.headers: dict[str, str] = {}
        environ = {"PATH_INFO": path_info(path), "REQUEST_METHOD": "GET", "QUERY_STRING": query, **headers}
        self.body = b"".join(app(environ, self.start_response))

    def start_response(self, status, headers, exc_info=None):
        self.status = status
        self.headers = dict(headers)

    @property
    def code(self) -> int:
        return int(self.status.split()[0])

    @property
    def text(self) -> str:
        return self.body.decode()


@pytest.fixture
def root(tmp_path) -> Path:
    reports = tmp_path / "reports"
    build = reports / "test-py3.11" / "7"
    (build / "htmlcov").mkdir(parents=True)
    (build / "coverage.xml").write_text('<?xml version="1.0"?><coverage line-rate="0.9"/>')
    (build / "htmlcov" / "index.html").write_text("<html>coverage index</html>")
    (build / "bandit.sarif").write_text('{"version": "2.1.0"}')
    (build / "odd name & <b>.txt").write_text("odd")
    for number in ("2", "10", "9"):
        (reports / "test-py3.11" / number).mkdir()
    (reports / "lint").mkdir()
    (tmp_path / "secret.txt").write_text("TOP-SECRET")
    return reports


@pytest.fixture
def app(root) -> ReportsApp:
    return ReportsApp(str(root))


def get(app: ReportsApp, path: str) -> Response:
    return Response(app, path)


def test_serves_a_file_with_its_type_and_length(app):
    response = get(app, "/test-py3.11/7/coverage.xml")
    assert response.code == 200
    assert response.text == '<?xml version="1.0"?><coverage line-rate="0.9"/>'
    assert response.headers["Content-Type"] in ("application/xml", "text/xml")
    assert response.headers["Content-Length"] == str(len(response.body))


def test_sarif_and_json_are_served_as_json(app):
    response = get(app, "/test-py3.11/7/bandit.sarif")
    assert (response.code, response.headers["Content-Type"]) == (200, "application/json")


def test_percent_encoded_names_are_decoded(app):
    response = get(app, "/test-py3.11/7/odd%20name%20%26%20%3Cb%3E.txt")
    assert (response.code, response.text) == (200, "odd")


def test_lists_a_directory_with_escaped_links(app):
    response = get(app, "/test-py3.11/7/")
    assert response.code == 200 and response.headers["Content-Type"].startswith("text/html")
    assert '<a href="coverage.xml">coverage.xml</a>' in response.text
    assert '<a href="htmlcov/">htmlcov</a>' in response.text
    assert "odd name &amp; &lt;b&gt;.txt" in response.text and "<b>" not in response.text
    assert 'href="odd%20name%20%26%20%3Cb%3E.txt"' in response.text


def test_lists_builds_newest_first_and_the_root(app):
    builds = get(app, "/test-py3.11/").text
    positions = [builds.index(f'href="{n}/"') for n in ("10", "9", "7", "2")]
    assert positions == sorted(positions)
    top = get(app, "/")
    assert top.code == 200 and 'href="test-py3.11/"' in top.text and 'href="lint/"' in top.text
    assert "(empty)" in get(app, "/lint/").text


def test_a_directory_without_slash_redirects(app):
    response = get(app, "/test-py3.11/7")
    assert response.code == 301 and response.headers["Location"] == "7/"


def test_a_directory_with_an_index_serves_it(app):
    response = get(app, "/test-py3.11/7/htmlcov/")
    assert (response.code, response.text) == (200, "<html>coverage index</html>")


def test_missing_paths_are_404(app):
    assert get(app, "/test-py3.11/7/nope.xml").code == 404
    assert get(app, "/nobuilder/").code == 404


@pytest.mark.parametrize(
    "path",
    [
        "/../secret.txt",
        "/test-py3.11/../../secret.txt",
        "/%2e%2e/secret.txt",
        "/test-py3.11/7/..%2f..%2f..%2fsecret.txt",
        "/..",
        "//" + "../secret.txt",
    ],
)
def test_refuses_path_traversal(app, path):
    response = get(app, path)
    assert response.code == 404
    assert b"TOP-SECRET" not in response.body


def test_absolute_paths_stay_inside_the_root(app, root):
    secret = root.parent / "secret.txt"
    response = get(app, "/" + str(secret))
    assert b"TOP-SECRET" not in response.body and response.code == 404


def test_refuses_symlinks_that_leave_the_root(app, root):
    os.symlink(root.parent / "secret.txt", root / "lint" / "link.txt")
    os.symlink(root.parent, root / "lint" / "up")
    assert get(app, "/lint/link.txt").code == 404
    assert get(app, "/lint/up/secret.txt").code == 404
    assert b"TOP-SECRET" not in get(app, "/lint/up/").body


def test_a_sibling_directory_sharing_the_prefix_is_outside(tmp_path, root):
    sibling = Path(str(root) + "-other")
    sibling.mkdir()
    (sibling / "x.txt").write_text("TOP-SECRET")
    response = get(ReportsApp(str(root)), "/../reports-other/x.txt")
    assert response.code == 404 and b"TOP-SECRET" not in response.body


# --- reports listed with their kind and what they say -------------------------------------------
JUNIT = (
    '<testsuites><testsuite tests="10" failures="1" errors="1" skipped="2"/>'
    '<testsuite tests="5" failures="0" errors="0" skipped="0"/></testsuites>'
)
SARIF = {
    "version": "2.1.0",
    "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
    "runs": [{"tool": {"driver": {"name": "bandit"}}, "results": [{"level": "error"}, {"level": "warning"},
                                                                  {"level": "warning"}, {}]}],
}  # fmt: skip


@pytest.fixture
def reports(root) -> Path:
    """A second build of test-py3.11 with every kind of report, one of them nested."""
    build = root / "test-py3.11" / "8"
    (build / "reports" / "html").mkdir(parents=True)
    (build / "coverage.xml").write_text('<?xml version="1.0"?><coverage line-rate="0.8375"/>')
    (build / "reports" / "junit.xml").write_text(JUNIT)
    (build / "bandit.json").write_text(json.dumps(SARIF))
    (build / "pip-audit.json").write_text('{"dependencies": []}')
    (build / "reports" / "html" / "index.html").write_text("<html>report</html>")
    (build / "notes.xml").write_text("<notes/>")
    return build


def test_a_build_lists_each_report_with_its_kind_and_figures(app, reports):
    page = get(app, "/test-py3.11/8/").text
    assert '<a href="coverage.xml">coverage.xml</a></td><td>coverage</td><td>83.75% of lines covered</td>' in page
    assert "<td>junit</td><td>15 tests: 11 passed, 2 failed, 2 skipped</td>" in page
    assert '<a href="reports/junit.xml">reports/junit.xml</a>' in page
    assert "<td>sarif</td><td>4 findings: 1 error, 3 warning</td>" in page
    assert '<a href="reports/html/">reports/html</a></td><td>html</td>' in page
    assert "<td>json</td>" in page and "<td>xml</td>" in page
    assert get(app, "/test-py3.11/8/reports/junit.xml").text == JUNIT  # the files are served as before
    assert get(app, "/test-py3.11/8/bandit.json").headers["Content-Type"] == "application/json"


def test_the_sarif_of_the_first_build_has_no_findings(app):
    assert "<td>sarif</td><td>no findings</td>" in get(app, "/test-py3.11/7/").text


def test_a_builder_lists_its_builds_with_what_their_reports_say(app, reports):
    page = get(app, "/test-py3.11/").text
    row = page[page.index('href="8/"') : page.index('href="7/"')]
    assert "coverage: 83.75% of lines covered" in row and "junit: 15 tests: 11 passed, 2 failed, 2 skipped" in row
    assert "sarif: 4 findings: 1 error, 3 warning" in row and "html report" in row
    (reports.parent.parent / "security" / "4").mkdir(parents=True)
    (reports.parent.parent / "security" / "4" / "bandit.sarif").write_text(json.dumps(SARIF))
    top = get(app, "/").text
    assert '<a href="security/">security</a></td><td>1</td>' in top
    assert '<a href="security/4/">#4</a> sarif: 4 findings: 1 error, 3 warning' in top
    assert '<a href="test-py3.11/10/">#10</a>' in top  # the newest build (no reports in it)


def test_builds_are_paginated_fifty_a_page(app, root):
    for number in range(100, 160):
        (root / "lint" / str(number)).mkdir()
    first, second = get(app, "/lint/").text, Response(app, "/lint/", "page=2").text
    assert 'href="159/"' in first and 'href="110/"' in first and 'href="109/"' not in first
    assert 'href="?page=2"' in first and 'href="109/"' in second and 'href="?page=1"' in second


def test_the_web_ui_gets_the_first_page_with_links_from_its_root(app):
    embedded = Response(app, "/index.html")
    assert embedded.code == 200 and embedded.text.startswith("<style>")
    assert 'href="plugins/wsgi_dashboards/reports/test-py3.11/"' in embedded.text
    opened = Response(app, "/index.html", HTTP_SEC_FETCH_DEST="document")
    assert (opened.code, opened.headers["Location"]) == (302, "./")


def test_symlinked_files_are_neither_read_nor_listed_as_reports(app, root):
    (root / "lint" / "3").mkdir()
    os.symlink(root.parent / "secret.txt", root / "lint" / "3" / "coverage.xml")
    page = get(app, "/lint/3/")
    assert page.code == 200 and "coverage.xml" not in page.text and "TOP-SECRET" not in page.text
    outside = root.parent / "outside" / "9"
    outside.mkdir(parents=True)
    (outside / "coverage.xml").write_text('<coverage line-rate="0.42"/>')
    os.symlink(root.parent / "outside", root / "elsewhere")
    os.symlink(outside, root / "lint" / "9")
    top, builds = get(app, "/").text, get(app, "/lint/").text
    assert "elsewhere" not in top and "42" not in top and 'href="9/"' not in builds


def test_a_build_page_links_to_the_build_when_the_master_knows_the_builder(app):
    class Api:
        def dataGet(self, path, **kwargs):
            return {"builderid": 4, "name": path[1]} if path == ("builders", "test-py3.11") else None

    app.buildbot_api = Api()
    assert 'href="../../../../../#/builders/4/builds/7">the build</a>' in get(app, "/test-py3.11/7/").text
    assert "the build</a>" not in get(app, "/lint/").text


# --- nothing served is active content in the web UI's origin (issue 21) ------------------------
SANDBOX = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff"}


def sandboxed(response: Response) -> bool:
    return all(response.headers.get(name) == value for name, value in SANDBOX.items())


def test_the_policy_is_at_least_the_one_jenkins_serves_artifacts_with():
    directives = [d.strip() for d in CSP.split(";")]
    assert directives[0] == "sandbox"  # no allow-scripts, no allow-same-origin: an opaque origin, no script
    assert {"default-src 'none'", "img-src 'self' data:", "style-src 'self' 'unsafe-inline'"} <= set(directives)


@pytest.fixture
def branch_files(root) -> Path:
    """What a branch's job may publish: HTML and SVG with scripts, a script, a JSON report."""
    build = root / "lint" / "5"
    (build / "htmlcov").mkdir(parents=True)
    (build / "report.html").write_text("<script>fetch('/api/v2/forceschedulers/x', {method: 'POST'})</script>")
    (build / "chart.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>')
    (build / "htmlcov" / "index.html").write_text('<link rel="stylesheet" href="style.css"><p>87%</p>')
    (build / "htmlcov" / "style.css").write_text("p { color: green }")
    (build / "htmlcov" / "coverage_html.js").write_text("document.title = 'ran'")
    (build / "audit.json").write_text('{"dependencies": []}')
    (build / "report.pdf").write_bytes(b"%PDF-1.4")
    return build


@pytest.mark.parametrize(
    "path, ctype",
    [
        ("/lint/5/report.html", "text/html"),
        ("/lint/5/chart.svg", "image/svg+xml"),
        ("/lint/5/audit.json", "application/json"),
        ("/lint/5/htmlcov/", "text/html"),
        ("/lint/5/htmlcov/style.css", "text/css"),
        ("/test-py3.11/7/coverage.xml", None),
    ],
)
def test_every_file_is_served_sandboxed(app, branch_files, path, ctype):
    response = get(app, path)
    assert response.code == 200 and sandboxed(response), response.headers
    assert ctype is None or response.headers["Content-Type"] == ctype
    assert "Content-Disposition" not in response.headers  # shown, not downloaded


def test_a_branch_script_is_served_as_text_and_other_types_download(app, branch_files):
    script = get(app, "/lint/5/htmlcov/coverage_html.js")
    assert (script.code, script.headers["Content-Type"]) == (200, "text/plain") and sandboxed(script)
    pdf = get(app, "/lint/5/report.pdf")
    assert pdf.headers["Content-Disposition"] == "attachment" and sandboxed(pdf)


@pytest.mark.parametrize("path", ["/", "/lint/", "/lint/5/", "/index.html", "/lint/5", "/nope/", "/../secret.txt"])
def test_every_listing_redirect_and_refusal_is_sandboxed(app, branch_files, path):
    response = get(app, path)
    assert response.code in (200, 301, 404) and sandboxed(response), (path, response.headers)


@pytest.mark.parametrize(
    "path",
    [
        "/%00",
        "/lint/5/report.html%00",
        "/lint/%005/",
        "/%01",
        "/lint/5/a%0Ab",
        "/%7F",
        "/%C2%85",  # a C1 control character
        "/%ff",
        "/%c3%28",
        "/lint/%ed%a0%80",  # an encoded surrogate
        "/lint/5/" + "x" * 256,
        "/" + "/".join(["y" * 200] * 25),
    ],
    ids=lambda path: path[:40],
)
def test_paths_no_report_can_have_answer_404(app, branch_files, path):
    response = get(app, path)
    assert response.code == 404 and sandboxed(response)


def test_non_ascii_and_percent_names_are_served(app, root):
    (root / "lint" / "caf\u00e9 100%.txt").write_text("ok")
    assert get(app, "/lint/caf%C3%A9%20100%25.txt").text == "ok"


def test_with_a_reports_origin_a_build_links_its_files_there(root, reports):
    app = ReportsApp(str(root), files_url="https://reports.example.net/")
    page = get(app, "/test-py3.11/8/").text
    assert '<a href="https://reports.example.net/test-py3.11/8/coverage.xml">coverage.xml</a>' in page
    assert 'href="https://reports.example.net/test-py3.11/8/reports/html/">reports/html</a>' in page
    assert '<a href="../">all builds</a>' in page  # the listings stay in the web UI
    nested = get(app, "/test-py3.11/8/reports/").text
    assert 'href="https://reports.example.net/test-py3.11/8/reports/junit.xml"' in nested
    assert get(app, "/test-py3.11/8/coverage.xml").code == 200  # and the UI still serves them, sandboxed
