"""A small WSGI app serving uploaded reports read-only (mounted as the "reports" dashboard).

Runs in the web server's thread pool, so its disk reads never block the
reactor. Directories get a plain listing; paths cannot leave the reports root.
"""

from __future__ import annotations

import html
import mimetypes
import os
from typing import Callable, Iterable
from urllib.parse import quote, unquote


class ReportsApp:
    def __init__(self, root: str):
        self.root = os.path.realpath(root)

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        relative = unquote(environ.get("PATH_INFO", "/")).lstrip("/")
        path = os.path.realpath(os.path.join(self.root, relative))
        if path != self.root and not path.startswith(self.root + os.sep):
            return self._plain(start_response, "404 Not Found", "not found\n")
        if os.path.isdir(path):
            if relative and not relative.endswith("/"):
                start_response("301 Moved Permanently", [("Location", quote(os.path.basename(relative)) + "/")])
                return [b""]
            index = os.path.join(path, "index.html")
            if os.path.isfile(index) and relative:
                path = index
            else:
                return self._listing(start_response, relative, path)
        if not os.path.isfile(path):
            return self._plain(start_response, "404 Not Found", "not found\n")
        ctype = mimetypes.guess_type(path)[0] or "application/octet-stream"
        if path.endswith((".sarif", ".json")):
            ctype = "application/json"
        with open(path, "rb") as handle:
            body = handle.read()
        start_response("200 OK", [("Content-Type", ctype), ("Content-Length", str(len(body)))])
        return [body]

    @staticmethod
    def _plain(start_response: Callable, status: str, text: str) -> Iterable[bytes]:
        start_response(status, [("Content-Type", "text/plain; charset=utf-8")])
        return [text.encode()]

    @staticmethod
    def _listing(start_response: Callable, relative: str, path: str) -> Iterable[bytes]:
        try:
            names = sorted(os.listdir(path), key=lambda n: (not n.isdigit(), -int(n) if n.isdigit() else 0, n))
        except OSError:
            names = []
        items = "".join(
            f'<li><a href="{quote(n)}{"/" if os.path.isdir(os.path.join(path, n)) else ""}">{html.escape(n)}</a></li>'
            for n in names
        )
        title = html.escape("reports/" + relative)
        body = f"<!doctype html><title>{title}</title><h1>{title}</h1><ul>{items or '<li>(empty)</li>'}</ul>"
        start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
        return [body.encode()]
