"""The web UI's session cookie: HttpOnly, SameSite=Lax, and Secure when `buildbotURL` is https.

The bug (Buildbot 4.3.0): the login lives in a JWT session cookie, `TWISTED_SESSION` (over TLS
`TWISTED_SECURE_SESSION`, each with `_<sitepath>` when the UI is below a path), set in two places,
neither with HttpOnly nor SameSite: Twisted's `Request.getSession` (a new, anonymous session) and
`BuildbotSession.updateSession` (`buildbot/www/service.py`: login and logout; the secure flag only
when the master itself speaks TLS, never behind a TLS proxy). A branch's report that ran in the web
UI's origin read the admin's cookie with `document.cookie` (issue 21).
Upstream: buildbot/buildbot#6209 ("buildbot should set appropriate flags on cookies", open).

The fix (`apply()`): both places call `request.addCookie`, so `BuildbotSite.requestFactory` (the
request class of Buildbot's web server only; Twisted's default is `server.Request`) becomes a
subclass of the class it finds whose `addCookie` sets, on the session cookies only:
- `httpOnly=True`: no script reads the session (the React UI never does: it asks `/config` and the
  REST API, which read the cookie on the server);
- `sameSite="lax"`: no cross-site subrequest or POST carries it (a sandboxed report's requests come
  from an opaque origin), while a top-level GET navigation does: a link to the UI from a chat, and
  the GitHub OAuth redirect back to `/auth/login`, set and send it as before (Strict would leave the
  first page after that redirect anonymous);
- `secure=True` when `buildbotURL` starts with `https://` (a TLS proxy in front of the master).
A later fix that needs its own request class must subclass `BuildbotSite.requestFactory` as it
finds it, as this one does.
"""

from __future__ import annotations

import inspect
from typing import Any

SESSION_COOKIES = (b"TWISTED_SESSION", b"TWISTED_SECURE_SESSION")
SAME_SITE = "lax"
_MARK = "_namaskah_session_cookie"


def is_session_cookie(name: Any) -> bool:
    raw = name if isinstance(name, bytes) else str(name).encode("utf-8", "replace")
    return any(raw == prefix or raw.startswith(prefix + b"_") for prefix in SESSION_COOKIES)


def buildbot_url_is_https(request: Any) -> bool:
    try:
        url = request.site.master.config.buildbotURL
    except AttributeError:  # a request outside a master's site: keep what the caller said
        return False
    return isinstance(url, str) and url.lower().startswith("https://")


def session_cookie_request(base: type[Any]) -> type[Any]:
    """`base` (a `twisted.web.server.Request` class) whose session cookies carry the flags above."""
    signature = inspect.signature(base.addCookie)

    class SessionCookieRequest(base):
        def addCookie(self, k: Any, v: Any, *args: Any, **kwargs: Any) -> None:
            if not is_session_cookie(k):
                super().addCookie(k, v, *args, **kwargs)
                return
            bound = signature.bind(self, k, v, *args, **kwargs)
            bound.arguments.update(httpOnly=True, sameSite=SAME_SITE)
            if buildbot_url_is_https(self):
                bound.arguments["secure"] = True
            super().addCookie(*bound.args[1:], **bound.kwargs)

    setattr(SessionCookieRequest, _MARK, True)
    SessionCookieRequest.__qualname__ = f"SessionCookie{base.__name__}"
    return SessionCookieRequest


def apply() -> None:
    from buildbot.www.service import BuildbotSite

    if getattr(BuildbotSite.requestFactory, _MARK, False):
        return
    BuildbotSite.requestFactory = session_cookie_request(BuildbotSite.requestFactory)
