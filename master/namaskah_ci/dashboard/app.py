"""The Pipelines, Deploys and Trends dashboards of the web UI's menu (WSGI apps, one per page).

`www.make_plugins` mounts each as a `buildbot-wsgi-dashboards` entry (`dashboard_entries`),
Pipelines first in the menu. An app runs in the web server's thread pool, reads the data API
through `dashboard_data.BuildbotData` (a fixed number of rounds per page) and answers HTML made
on the server; no page calls anything from the browser.

Routes of the app mounted as `<name>` (under `plugins/wsgi_dashboards/`):
- `<name>/index.html`: what the menu entry shows at `#/<name>`: the web UI fetches it and puts it
  into its own page (links relative to the web UI's root). A browser opening it as a document is
  sent to `./` instead, where the links are right for a page of its own.
- `<name>/`: the page standing alone, with its query: `?page=N` (pipelines, 25 a page),
  `?last=N` (trends, 1-100 pipelines), `?limit=N` (deploys, builds per environment).
- `<name>`: redirects to `<name>/`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from twisted.python import log

from namaskah_ci.dashboard.data import BuildbotData, FinishedCache
from namaskah_ci.dashboard.deploys import load_deploy_history
from namaskah_ci.dashboard.headers import WsgiDashboard, sandboxed
from namaskah_ci.dashboard.layout import EMBEDDED, STANDALONE, Links, message_page, pipelines_page
from namaskah_ci.dashboard.pipelines import load_pipeline_page
from namaskah_ci.dashboard.trends import load_trends
from namaskah_ci.dashboard.views import deploys_page, trends_page

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIEnvironment

    from namaskah_ci.settings import Settings

PER_PAGE = 25
DEFAULT_TRENDS = 30
DEFAULT_HISTORY = 30
# (name, caption, menu order, icon): order 0 puts Pipelines above the web UI's Home (order 1)
MENU = (
    ("pipelines", "Pipelines", 0, "tasks"),
    ("deploys", "Deploys", 2, "rocket"),
    ("trends", "Trends", 3, "chart-line"),
)
TITLES = {name: caption for name, caption, _, _ in MENU}


def int_param(query: dict[str, list[str]], name: str, default: int, low: int, high: int) -> int:
    try:
        value = int(query.get(name, [default])[0])
    except (TypeError, ValueError):
        return default
    return max(low, min(high, value))


class DashboardApp:
    """One dashboard page (`view`: pipelines, deploys or trends) as a WSGI app."""

    def __init__(
        self,
        view: str,
        required: Sequence[str] = (),
        environments: Sequence[str] = (),
        branches: dict[str, str] | None = None,
        source_factory: Callable[[Any], Any] = BuildbotData,
        clock: Callable[[], float] = time.time,
        cache: FinishedCache | None = None,
    ):
        if view not in TITLES:
            raise ValueError(f"unknown dashboard view {view!r}")
        self.view = view
        self.required = tuple(required)
        self.environments = tuple(environments)
        self.branches = dict(branches or {})
        self.source_factory = source_factory
        self.clock = clock
        self.cache = cache if cache is not None else FinishedCache()
        self.buildbot_api: Any = None  # set by the wsgi_dashboards plugin

    def render(self, links: Links, query: dict[str, list[str]]) -> str:
        source = self.source_factory(self.buildbot_api)
        now = self.clock()
        if self.view == "pipelines":
            page = 1 if links.embedded else int_param(query, "page", 1, 1, 100000)
            data = load_pipeline_page(source, page=page, per_page=PER_PAGE, required=self.required, cache=self.cache)
            return pipelines_page(data, links, now)
        if self.view == "deploys":
            limit = int_param(query, "limit", DEFAULT_HISTORY, 1, 200)
            history = load_deploy_history(source, self.environments, self.branches, limit=limit)
            return deploys_page(history, links, now)
        last = DEFAULT_TRENDS if links.embedded else int_param(query, "last", DEFAULT_TRENDS, 1, 100)
        return trends_page(load_trends(source, last=last, cache=self.cache, now=now), last, links)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse, /) -> Iterable[bytes]:
        start_response = sandboxed(start_response)  # defence in depth: every build value is escaped too
        path = environ.get("PATH_INFO", "")
        if environ.get("REQUEST_METHOD", "GET") not in ("GET", "HEAD"):
            return self._answer(start_response, "405 Method Not Allowed", b"GET only\n", "text/plain")
        if path == "":
            start_response("301 Moved Permanently", [("Location", f"{self.view}/"), ("Content-Length", "0")])
            return [b""]
        if path == "/index.html":
            if environ.get("HTTP_SEC_FETCH_DEST") == "document":  # opened by hand: the standalone page
                start_response("302 Found", [("Location", "./"), ("Content-Length", "0")])
                return [b""]
            links = EMBEDDED
        elif path == "/":
            links = STANDALONE
        else:
            return self._answer(start_response, "404 Not Found", b"not found\n", "text/plain")
        try:
            body = self.render(links, parse_qs(environ.get("QUERY_STRING", "")))
            status = "200 OK"
        except Exception:
            log.err(None, f"dashboard {self.view}: building the page failed")  # type: ignore[no-untyped-call]  # Twisted leaves log.err unannotated
            body = message_page(TITLES[self.view], self.view, "This page could not be built: see twistd.log.", links)
            status = "500 Internal Server Error"
        return self._answer(start_response, status, body.encode("utf-8"), "text/html")

    @staticmethod
    def _answer(start_response: StartResponse, status: str, body: bytes, ctype: str) -> Iterable[bytes]:
        start_response(
            status,
            [
                ("Content-Type", f"{ctype}; charset=utf-8"),
                ("Content-Length", str(len(body))),
                ("Cache-Control", "no-store"),
            ],
        )
        return [body]


def dashboard_entries(settings: Settings, wrap: Callable[[WsgiDashboard], WsgiDashboard]) -> list[dict[str, Any]]:
    """The `wsgi_dashboards` entries of the three pages; `wrap` guards each app (a private view)."""
    branches = {env: settings.deploy[env].branch for env in settings.environments}
    cache = FinishedCache()  # shared: the pages read the same finished builds
    return [
        {
            "name": name,
            "caption": caption,
            "app": wrap(
                DashboardApp(
                    name,
                    required=settings.checks.required,
                    environments=settings.environments,
                    branches=branches,
                    cache=cache,
                )
            ),
            "order": order,
            "icon": icon,
        }
        for name, caption, order, icon in MENU
    ]
