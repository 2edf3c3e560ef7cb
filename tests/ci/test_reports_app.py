"""ReportsApp, the read-only WSGI app behind the "reports" dashboard: files, listings, no way out of its root."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from namaskah_ci.reports_app import ReportsApp


class Response:
    def __init__(self, app: ReportsApp, path: str):
        self.status = ""
        self.headers: dict[str, str] = {}
        self.body = b"".join(app({"PATH_INFO": path, "REQUEST_METHOD": "GET"}, self.start_response))

    def start_response(self, status, headers):
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
