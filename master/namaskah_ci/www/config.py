"""The web UI: plugins (waterfall, console, grid, badges, reports), login, access rules, change hooks.

- Login: bcrypt htpasswd from the `admin_htpasswd` secret, or GitHub OAuth
  when its client id/secret secrets exist (`access/auth.py`).
- Access: `access/authz.py` (anyone views unless `[www] public_view = false`; only
  admins control anything, deploy and rollback above all).
- Change hooks: `/change_hook/github` when the `webhook_secret` secret exists,
  `/change_hook/base` for admins only (`github/webhook.py`).
- Badges (`/plugins/badges/<builder>.svg`) need the cairo library
  (Debian: libcairo2). They are public by nature, so they are switched off
  when `[www] public_view = false`, and the reports dashboard (a WSGI app the
  REST access rules do not cover) then answers only logged-in users.
- No avatars: the stock gravatar lookup would send users' e-mail hashes to a
  third party.
- Every dashboard answer is sandboxed (`www_headers`): a branch's report never runs in the UI's
  origin. `[www] reports_url` (another origin serving `<basedir>/reports`) is where the builds and
  the Reports dashboard link report files then; it must not be the UI's own origin. The session
  cookie is HttpOnly and SameSite=Lax (`fixes/session_cookie.py`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from http.cookies import CookieError, SimpleCookie
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from buildbot.config.errors import error as config_error
from buildbot.plugins import util
from buildbot.www.auth import parse_user_info_from_token

from namaskah_ci.access.auth import make_auth
from namaskah_ci.access.authz import make_authz
from namaskah_ci.dashboard.app import dashboard_entries
from namaskah_ci.dashboard.headers import WsgiDashboard, sandboxed
from namaskah_ci.dashboard.reports_app import ReportsApp
from namaskah_ci.github.pull_requests import merge_ref_waits
from namaskah_ci.github.webhook import AdminBaseHookHandler, GitHubHook
from namaskah_ci.names import WEBHOOK_SECRET
from namaskah_ci.pipeline.source import PipelineConfig
from namaskah_ci.secrets import secret_available
from namaskah_ci.settings import Settings
from namaskah_ci.steps.reports import reports_url

if TYPE_CHECKING:
    from wsgiref.types import StartResponse, WSGIEnvironment


def make_change_hook_dialects(
    settings: Settings, has_secret: Callable[[str], bool], pipeline_config: PipelineConfig | None = None
) -> dict[str, dict[str, Any]]:
    """`c['www']['change_hook_dialects']`: base for admins; github when its secret exists (pull
    requests are recorded when the master's `pipeline_config` is given: its mirror holds them)."""
    dialects: dict[str, dict[str, Any]] = {
        "base": {"custom_class": AdminBaseHookHandler, "admins": list(settings.www.admins)}
    }
    if has_secret(WEBHOOK_SECRET):
        dialects["github"] = {
            "custom_class": GitHubHook,
            "secret": util.Secret(WEBHOOK_SECRET),
            "max_payload_bytes": settings.github.max_payload_bytes,
            "repository": settings.github.repository,
            "merge_ref_waits": merge_ref_waits(settings.github.merge_ref_wait_seconds),
            "fork_approval": settings.workers.mode == "local",
            "pipeline_config": pipeline_config,
        }
    return dialects


class LoggedInOnly:
    """WSGI wrapper: 403 unless the request carries the session cookie of a logged-in user."""

    COOKIE_NAMES = ("TWISTED_SESSION", "TWISTED_SECURE_SESSION")

    def __init__(self, app: WsgiDashboard):
        self.app = app
        self._buildbot_api: Any = None

    @property
    def buildbot_api(self) -> Any:
        return self._buildbot_api

    @buildbot_api.setter
    def buildbot_api(self, value: Any) -> None:
        # set by the wsgi_dashboards plugin; the wrapped app may want it too
        self._buildbot_api = value
        self.app.buildbot_api = value

    def logged_in(self, environ: WSGIEnvironment) -> bool:
        return logged_in(environ, self._buildbot_api)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse, /) -> Iterable[bytes]:
        if self.logged_in(environ):
            return self.app(environ, start_response)
        sandboxed(start_response)("403 Forbidden", [("Content-Type", "text/plain; charset=utf-8")])
        return [b"log in to see the reports\n"]


def logged_in(environ: WSGIEnvironment, buildbot_api: Any) -> bool:
    """Whether the request carries the session cookie of a logged-in user of `buildbot_api`'s master."""
    try:
        cookies = SimpleCookie(environ.get("HTTP_COOKIE", ""))
        secret = buildbot_api.master.www.site.session_secret
    except (CookieError, AttributeError):
        return False
    for name in LoggedInOnly.COOKIE_NAMES:
        if name in cookies:
            try:
                if parse_user_info_from_token(cookies[name].value, secret).get("username"):
                    return True
            except KeyError:
                continue
    return False


def separate_reports_url(settings: Settings) -> str:
    """`[www] reports_url` ending in "/", or "" (the web UI serves the reports, sandboxed); a config
    error unless it is an http(s) URL of another origin than the web UI's."""
    value = settings.www.reports_url
    if not value:
        return ""
    url, ui = urlsplit(value), urlsplit(settings.buildbot_url)
    if url.scheme not in ("http", "https") or not url.hostname:
        config_error(f"[www] reports_url: must be an http(s) URL such as https://reports.example.com/, got {value!r}")
        return ""
    if (url.scheme, url.hostname, url.port) == (ui.scheme, ui.hostname, ui.port):
        config_error(
            f"[www] reports_url {value!r} is the web UI's own origin: a report's scripts would run with the "
            "logged-in user's session; serve <basedir>/reports from another host, or leave it empty"
        )
        return ""
    return reports_url(settings.buildbot_url, value)


def make_plugins(settings: Settings) -> dict[str, Any]:
    """The UI plugins; the dashboards (Pipelines first in the menu, then Deploys, Trends, Reports) are
    WSGI apps the REST access rules do not cover, so a private view wraps each in `LoggedInOnly`.

    Buildbot 4.3 cannot make a dashboard the home page: `c['www']['default_page']` is accepted and
    ignored by its React UI (buildbot#8758, fixed after 4.3 by buildbot#8803), so Pipelines is the
    first menu entry instead (order 0, above Home)."""

    def guard(app: WsgiDashboard) -> WsgiDashboard:
        return app if settings.www.public_view else LoggedInOnly(app)

    reports = guard(ReportsApp(str(settings.reports_dir), files_url=separate_reports_url(settings)))
    plugins: dict[str, Any] = {
        "waterfall_view": {},
        "console_view": {},
        "grid_view": {},
        "wsgi_dashboards": [
            *dashboard_entries(settings, guard),
            {
                "name": "reports",
                "caption": "Reports",
                "app": reports,
                "order": 20,
                "icon": "file-text",
            },
        ],
    }
    if settings.www.public_view:
        plugins["badges"] = {}
    return plugins


def make_www(
    settings: Settings, has_secret: Callable[[str], bool] | None = None, pipeline_config: PipelineConfig | None = None
) -> dict[str, Any]:
    """A fresh `c['www']` dict; `has_secret(name)` defaults to looking at the configured providers."""
    if has_secret is None:

        def has_secret(name: str) -> bool:
            return secret_available(settings, name)

    return {
        "port": f"tcp:{settings.www.port}:interface={settings.www.bind}",
        "plugins": make_plugins(settings),
        "auth": make_auth(settings, has_secret),
        "authz": make_authz(settings),
        "change_hook_dialects": make_change_hook_dialects(settings, has_secret, pipeline_config),
        "avatar_methods": [],
    }
