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
"""

from __future__ import annotations

from typing import Callable

CSP = "sandbox; default-src 'none'; img-src 'self' data:; style-src 'self' 'unsafe-inline'"
HEADERS = (("Content-Security-Policy", CSP), ("X-Content-Type-Options", "nosniff"))
_NAMES = {name.lower() for name, _ in HEADERS}


def sandboxed(start_response: Callable) -> Callable:
    """A WSGI `start_response` that adds `HEADERS` to every answer (in place of any the app set)."""

    def start(status: str, headers: list, exc_info=None):
        kept = [(name, value) for name, value in headers if name.lower() not in _NAMES]
        if exc_info is None:
            return start_response(status, kept + list(HEADERS))
        return start_response(status, kept + list(HEADERS), exc_info)

    return start
