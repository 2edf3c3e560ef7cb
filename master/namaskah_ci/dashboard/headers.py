"""The headers every WSGI dashboard answers with (reports, pipelines, deploys, trends): no page they
serve is active content in the web UI's origin.

A report is a branch's file. Served from the web UI's origin as it was, a branch's `report.html` or
SVG ran its script with the session of the admin who opened it and forced a build through the REST
API (issue 21). So every answer of the dashboards carries, as Jenkins serves archived artifacts:
- `Content-Security-Policy: sandbox; default-src 'none'; img-src 'self' data:; style-src 'self'
  'unsafe-inline'`: the document gets an opaque origin and runs no script (were one to run, its
  requests carry an Origin the REST API refuses, and no session cookie: SameSite=Lax,
  `fixes/session_cookie.py`); it loads only images and stylesheets, from the master, so a coverage
  report keeps its CSS;
- `X-Content-Type-Options: nosniff`: a browser never guesses a more active type than the one sent.
No `Cross-Origin-Resource-Policy: same-origin`: a sandboxed document's opaque origin would then be
refused its own stylesheets. The dashboards' own pages use inline `<style>` and inline SVG only,
which the policy allows; the web UI fetches their `index.html` by XHR and inserts the HTML into its
own page, where these headers (of a fetched resource, not of a document) change nothing.

`WsgiDashboard` is what every dashboard app is to the `wsgi_dashboards` plugin that mounts it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIEnvironment

    from _typeshed import OptExcInfo

CSP = "sandbox; default-src 'none'; img-src 'self' data:; style-src 'self' 'unsafe-inline'"
HEADERS = (("Content-Security-Policy", CSP), ("X-Content-Type-Options", "nosniff"))
_NAMES = {name.lower() for name, _ in HEADERS}


class WsgiDashboard(Protocol):
    """A dashboard's WSGI app; the `wsgi_dashboards` plugin sets its `buildbot_api` when it mounts it."""

    buildbot_api: Any

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse, /) -> Iterable[bytes]: ...


def sandboxed(start_response: StartResponse) -> StartResponse:
    """A WSGI `start_response` that adds `HEADERS` to every answer (in place of any the app set)."""

    def start(
        status: str, headers: list[tuple[str, str]], exc_info: OptExcInfo | None = None
    ) -> Callable[[bytes], object]:
        kept = [(name, value) for name, value in headers if name.lower() not in _NAMES]
        if exc_info is None:
            return start_response(status, kept + list(HEADERS))
        return start_response(status, kept + list(HEADERS), exc_info)

    return start
