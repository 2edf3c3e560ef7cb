"""Request bodies: refused by their declared size before they are read, and cut off at the limit.

The bug (Buildbot 4.3.0 on Twisted 25.5): Buildbot's web server (`www/service.py` `BuildbotSite`,
a `twisted.web.server.Site`) reads every request body whole — into memory or a temporary file —
before any resource sees it, whatever its size and whoever sends it: a 500 MiB anonymous POST to
the REST API was read to the end before its 400 (the master grew to 1.1 GiB), and the GitHub
hook read 100 MiB before refusing it as over 25 MB. Twisted's `http.Request` has no body limit
(`gotLength` makes the buffer, `handleContentChunk` appends to it); Buildbot sets none.
Not filed upstream; reproduction: `curl -H 'Expect:' --data-binary @500MiB.bin
http://master:8010/api/v2/forceschedulers/x` and watch the master's RSS, or declare
`Content-Length: 524288000` and send nothing: the master waits for the body instead of refusing.

The fix (`apply()`): `BuildbotSite.requestFactory` becomes a subclass of the request class it
finds (fixes/session_cookie.py subclasses it too) whose body is limited by path:
- `/change_hook/github`: `[github] max_payload_bytes` (GitHub sends up to 25 MB);
- every other path (REST, force forms, login, the `base` hook, ...): `[limits] request_bytes`.
A `Content-Length` over the limit is refused when the headers end, before any of the body is
read (no `100 Continue` is sent); a chunked body is refused as soon as what arrived passes the
limit, and nothing more of it is kept. The answer is `413 Content Too Large` with one line naming
the limit and its setting, then the connection closes: the rest of the body is read and dropped
for at most `LINGER_SECONDS` / `LINGER_BYTES` first, so a client still sending sees the 413
rather than a reset. The limits come from the `RequestBodyLimits` service (config.py adds it with
the settings' values; without it the defaults below apply).
"""

from __future__ import annotations

import contextlib
import io
from typing import Any, cast

from buildbot import config
from buildbot.util import service
from twisted.internet import defer
from twisted.internet.base import ReactorBase
from twisted.python import log

SERVICE_NAME = "request_body_limits"
HOOK_PATH = b"/change_hook/github"
DEFAULT_REQUEST_BYTES = 1024 * 1024  # [limits] request_bytes in master/pipeline.toml
DEFAULT_HOOK_BYTES = 25 * 1024 * 1024  # [github] max_payload_bytes
LINGER_SECONDS = 2.0
LINGER_BYTES = 16 * 1024 * 1024
_MARK = "_namaskah_request_limits"


class RequestBodyLimits(service.BuildbotService):
    """Holds the body limits the web server's requests read (`limits_for`)."""

    name = SERVICE_NAME

    def checkConfig(self, request_bytes: int, hook_bytes: int) -> None:
        for key, value in (("[limits] request_bytes", request_bytes), ("[github] max_payload_bytes", hook_bytes)):
            if not isinstance(value, int) or value <= 0:
                config.error(f"{key} must be a number of bytes above 0, not {value!r}")

    def reconfigService(self, request_bytes: int, hook_bytes: int) -> defer.Deferred[None]:
        self.request_bytes, self.hook_bytes = request_bytes, hook_bytes
        done: defer.Deferred[None] = super().reconfigService()
        return done


def limits_for(master: Any, path: bytes) -> tuple[int, str]:
    """(bytes, setting) of the body limit of a request to `path` on `master`'s web server."""
    limits = None
    with contextlib.suppress(AttributeError):
        limits = master.service_manager.namedServices.get(SERVICE_NAME)
    target = path.split(b"?", 1)[0]
    if target == HOOK_PATH or target.startswith(HOOK_PATH + b"/"):
        return getattr(limits, "hook_bytes", DEFAULT_HOOK_BYTES), "[github] max_payload_bytes"
    return getattr(limits, "request_bytes", DEFAULT_REQUEST_BYTES), "[limits] request_bytes"


def refusal(limit: int, setting: str, declared: int | None) -> bytes:
    size = f"of {declared} bytes " if declared is not None else ""
    line = f"request body {size}is over the limit of {limit} bytes ({setting})\n".encode()
    head = (
        "HTTP/1.1 413 Content Too Large\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(line)}\r\nConnection: close\r\n\r\n"
    ).encode()
    return head + line


def limited_request(base: type[Any]) -> type[Any]:
    """`base` (a `twisted.web.server.Request` class) with the body limits above."""

    class LimitedRequest(base):
        _body_limit: tuple[int, str] | None = None
        _body_seen = 0
        _body_refused = False

        def gotLength(self, length: int | None) -> None:
            channel = self.channel
            site = getattr(channel, "site", None)
            self._body_limit = limits_for(getattr(site, "master", None), getattr(channel, "_path", b"") or b"")
            if length is not None and length > self._body_limit[0]:
                self.content = io.BytesIO()
                self._refuse(length)
                return
            super().gotLength(length)

        def handleContentChunk(self, data: bytes) -> None:
            if self._body_refused:
                return
            self._body_seen += len(data)
            if self._body_limit is not None and self._body_seen > self._body_limit[0]:
                self._refuse(None)
                return
            super().handleContentChunk(data)

        def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
            if not self._body_refused:  # a refused body's request is never processed
                super().requestReceived(command, path, version)

        def _refuse(self, declared: int | None) -> None:
            limit, setting = self._body_limit or (0, "")
            self._body_refused = True
            self.requestHeaders.removeHeader(b"expect")  # no "100 Continue" after the 413
            channel = self.channel
            transport = getattr(channel, "transport", None)
            peer = getattr(self, "client", None) or (transport.getPeer() if transport else "?")
            log.msg(
                f"refused a request body {f'of {declared:d} bytes ' if declared is not None else ''}"
                f"to {(getattr(channel, '_path', b'') or b'?')[:200]!r} from {peer}: over {limit} ({setting})"
            )
            if transport is None:
                return
            transport.write(refusal(limit, setting, declared))
            _linger_then_close(channel, transport)

    setattr(LimitedRequest, _MARK, True)
    LimitedRequest.__qualname__ = f"Limited{base.__name__}"
    return LimitedRequest


def _linger_then_close(channel: Any, transport: Any) -> None:
    """Half-close after the 413, drop what the client still sends (bounded), then close."""
    from twisted.internet import reactor

    dropped = [0]

    def drop(data: bytes) -> None:
        dropped[0] += len(data)
        if dropped[0] > LINGER_BYTES:
            transport.abortConnection()

    channel.dataReceived = drop  # the rest of this connection is never parsed
    channel.setTimeout(None)
    try:
        transport.loseWriteConnection()
    except AttributeError:  # not a TCP transport: close at once
        transport.loseConnection()
        return
    # the global reactor is a ReactorBase (mypy sees only the module twisted.internet.reactor)
    cast(ReactorBase, reactor).callLater(LINGER_SECONDS, transport.abortConnection)


def apply() -> None:
    """Make Buildbot's web server use the limited request class (idempotent)."""
    from buildbot.www.service import BuildbotSite

    if getattr(BuildbotSite.requestFactory, _MARK, False):
        return
    BuildbotSite.requestFactory = limited_request(BuildbotSite.requestFactory)
