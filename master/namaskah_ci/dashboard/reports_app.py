"""A small WSGI app serving uploaded reports read-only (mounted as the "reports" dashboard).

Runs in the web server's thread pool, so its disk reads never block the
reactor. Paths cannot leave the reports root. Files are served as they are;
directories are listed as reports (`dashboard_reports`):
- `/`: every builder, its newest build and what that build's reports say;
- `/<builder>/`: its builds, newest first (50 a page, `?page=N`), each with
  the kinds of its reports and their figures (coverage %, JUnit passed /
  failed / skipped, SARIF findings by severity);
- `/<builder>/<build>/` and below: each report with its kind and figures; a
  directory with an `index.html` (an HTML report) serves that page instead.
`/index.html` (what the web UI's Reports menu entry fetches) is the first
page, with links that work from the web UI's root.

A report is a branch's file, so nothing here is ever active content in the web UI's origin: every
answer carries `www_headers.HEADERS` (CSP `sandbox`, `nosniff`); a branch's scripts are served as
text, and files of a type a browser would not just show are downloads. `files_url` (`[www]
reports_url`: another origin serving the same directory, docs/web-ui.md) is where a build's listing
links its files. `PATH_INFO` arrives percent-decoded (WSGI); a path no file can have (not UTF-8, a
control character, a name or path longer than the file system takes) answers 404.
"""

from __future__ import annotations

import mimetypes
import os
import unicodedata
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote

from namaskah_ci.dashboard.headers import sandboxed
from namaskah_ci.dashboard.layout import EMBEDDED, Links
from namaskah_ci.dashboard.reports import ReportReader, build_page, builder_page, root_page

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIEnvironment

MOUNT = "plugins/wsgi_dashboards/reports/"
NAME_MAX = 255  # bytes in one file name (Linux)
PATH_MAX = 4096  # bytes in a path
# besides text/* and image/*, the types a browser shows (under the sandbox) rather than hands elsewhere
SHOWN = ("application/json", "application/xml")
SCRIPT_TYPES = {"text/javascript", "application/javascript", "application/x-javascript"}


def report_path(path_info: str) -> str | None:
    """The path below the root that `PATH_INFO` names (WSGI: decoded, bytes as ISO-8859-1), or None
    when no report can have that name."""
    try:
        relative = path_info.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return None
    if len(relative.encode()) > PATH_MAX or any(len(part.encode()) > NAME_MAX for part in relative.split("/")):
        return None
    if any(unicodedata.category(ch) == "Cc" for ch in relative):
        return None
    return relative.lstrip("/")


def file_headers(path: str, size: int) -> list[tuple[str, str]]:
    """Content-Type (never a script's) and, for a type a browser would not just show, a download."""
    ctype = mimetypes.guess_type(path)[0] or "application/octet-stream"
    if path.endswith((".sarif", ".json")):
        ctype = "application/json"
    if ctype in SCRIPT_TYPES:
        ctype = "text/plain"
    headers = [("Content-Type", ctype), ("Content-Length", str(size))]
    if not ctype.startswith(("text/", "image/")) and ctype not in SHOWN:
        headers.append(("Content-Disposition", "attachment"))
    return headers


class ReportsApp:
    def __init__(self, root: str, files_url: str = ""):
        self.root = os.path.realpath(root)
        self.files_url = files_url  # "" or ending in "/"
        self.reader = ReportReader()
        self.buildbot_api: Any = None  # set by the wsgi_dashboards plugin

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse, /) -> Iterable[bytes]:
        start_response = sandboxed(start_response)
        relative = report_path(environ.get("PATH_INFO", "/"))
        if relative is None:
            return self._plain(start_response, "404 Not Found", "not found\n")
        try:
            return self._serve(relative, environ, start_response)
        except (OSError, ValueError):  # e.g. a file removed meanwhile: nothing to serve
            return self._plain(start_response, "404 Not Found", "not found\n")

    def _serve(self, relative: str, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = os.path.realpath(os.path.join(self.root, relative))
        if path != self.root and not path.startswith(self.root + os.sep):
            return self._plain(start_response, "404 Not Found", "not found\n")
        if relative == "index.html" and not os.path.isfile(path):
            if environ.get("HTTP_SEC_FETCH_DEST") == "document":  # opened by hand: the standalone page
                start_response("302 Found", [("Location", "./"), ("Content-Length", "0")])
                return [b""]
            return self._html(start_response, root_page(self.root, self.reader, EMBEDDED, prefix=MOUNT))
        if os.path.isdir(path):
            if relative and not relative.endswith("/"):
                start_response("301 Moved Permanently", [("Location", quote(os.path.basename(relative)) + "/")])
                return [b""]
            index = os.path.join(path, "index.html")
            if os.path.isfile(index) and relative:
                path = index
            else:
                query = parse_qs(environ.get("QUERY_STRING", ""))
                return self._html(start_response, self._listing(relative, path, query))
        if not os.path.isfile(path):
            return self._plain(start_response, "404 Not Found", "not found\n")
        with open(path, "rb") as handle:
            body = handle.read()
        start_response("200 OK", file_headers(path, len(body)))
        return [body]

    def _listing(self, relative: str, path: str, query: dict[str, list[str]]) -> str:
        parts = [p for p in relative.split("/") if p]
        links = Links(root="../" * (3 + len(parts)), dashboards="../" * (1 + len(parts)), embedded=False)
        if not parts:
            return root_page(path, self.reader, links)
        if len(parts) == 1:
            try:
                page = max(1, int(query.get("page", ["1"])[0]))
            except ValueError:
                page = 1
            return builder_page(parts[0], path, self.reader, links, page)
        href = None
        if len(parts) == 2 and parts[1].isdigit():
            builderid = self._builderid(parts[0])
            if builderid is not None:
                href = f"{links.root}#/builders/{builderid}/builds/{parts[1]}"
        title = "Reports of " + " ".join([parts[0], f"#{parts[1]}", *parts[2:]])
        up = "all builds" if len(parts) == 2 else "up"
        files = f"{self.files_url}{quote('/'.join(parts))}/" if self.files_url else ""
        return build_page(title, self.reader.build_reports(path), links, build_href=href, up_label=up, files=files)

    def _builderid(self, name: str) -> int | None:
        """The builder's id for a link to the build (None outside a master, or when it is gone)."""
        if self.buildbot_api is None:
            return None
        try:
            builder = self.buildbot_api.dataGet(("builders", name))
        except Exception:
            return None
        return builder.get("builderid") if isinstance(builder, dict) else None

    @staticmethod
    def _plain(start_response: StartResponse, status: str, text: str) -> Iterable[bytes]:
        start_response(status, [("Content-Type", "text/plain; charset=utf-8")])
        return [text.encode()]

    @staticmethod
    def _html(start_response: StartResponse, text: str) -> Iterable[bytes]:
        body = text.encode("utf-8")
        start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body)))])
        return [body]
