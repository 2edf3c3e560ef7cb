"""Fixes for known Buildbot 4.3.0 bugs, applied explicitly by master.cfg (never at import).

- buildbot#9065: the REST API encodes JSON in a thread and also *writes* the
  response from that thread. Twisted is not thread-safe, so under load a
  response can be cut short (clients see IncompleteRead / "transfer closed with
  N bytes remaining"). The replacement still encodes in the thread but hands
  the bytes to the reactor thread to send.
- `buildbot.util.pathmatch.Matcher._compile` never clears `_dirty`, so every
  lookup rebuilds the table of every endpoint pattern: each REST request paid
  for it once in the data API and again in each authz endpoint matcher (8 % of
  the master's CPU under 20 concurrent REST clients, bench/pipeline_bench.py).
  The replacement clears it; adding a pattern still marks the table dirty.
- The home page: Buildbot 4.3's React UI ignores `c['www']['default_page']`
  (buildbot#8758, fixed after 4.3.0 by #8803), and the part of the address
  after `#` never reaches the server. `apply_home_page` adds one line of
  script to the index page the server renders: opening the web UI at its root
  (no route, or `#/`) lands on the pipeline dashboard; the menu's *Home* still
  shows Buildbot's own page. Only for Buildbot 4.3.x.
- Change hooks answer "no change found" to every request that recorded no
  change itself, e.g. a push the git poller then records (and GitHub shows
  that text for every delivery). `apply_change_hook_answer` lets a dialect
  handler put its own answer on the request (`webhook.ANSWER`); without one
  the stock text stays.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet import defer, reactor, threads

from buildbot import version as buildbot_version
from buildbot.util import pathmatch, unicode2bytes
from buildbot.www import config as www_config
from buildbot.www import change_hook, rest

_original_compile = pathmatch.Matcher._compile


def _write_json_data(request: Any, encoder: json.JSONEncoder, data: Any) -> None:
    """Runs in a worker thread: encode here, write in the reactor."""
    body = b"".join(unicode2bytes(chunk) for chunk in encoder.iterencode(data))

    def send() -> None:
        if rest._is_request_finished(request):
            return
        request.setHeader(b"content-length", unicode2bytes(str(len(body))))
        if request.method != b"HEAD":
            request.write(body)

    threads.blockingCallFromThread(reactor, send)


def _compile_once(self: pathmatch.Matcher) -> None:
    _original_compile(self)
    self._dirty = False


def apply_rest_write_fix() -> None:
    """Replace the thread-unsafe REST writer (idempotent)."""
    rest.V2RootResource._write_json_data = staticmethod(_write_json_data)


def apply_matcher_compile_fix() -> None:
    """Compile a path Matcher's table once per change, not per lookup (idempotent)."""
    pathmatch.Matcher._compile = _compile_once


HOME_ROUTE = "pipelines"  # the pipeline dashboard (www/config.py)
_PLACEHOLDER = " <!-- BUILDBOT_CONFIG_PLACEHOLDER -->"


def home_script(route: str) -> str:
    return (
        '<script>if (!location.hash || location.hash === "#" || location.hash === "#/") '
        f'{{ location.replace(location.pathname + location.search + "#/{route}"); }}</script>\n'
    )


def apply_home_page(route: str = HOME_ROUTE) -> None:
    """Open the web UI's root on `route` (idempotent; Buildbot 4.3.x only)."""
    if not str(buildbot_version).startswith("4.3.") or getattr(www_config.IndexResource, "_namaskah_home", None):
        return
    original = www_config.IndexResource.__init__

    def __init__(self, *args, **kwargs):
        original(self, *args, **kwargs)
        if _PLACEHOLDER in self.index_template:
            self.index_template = self.index_template.replace(_PLACEHOLDER, home_script(route) + _PLACEHOLDER, 1)

    www_config.IndexResource.__init__ = __init__
    www_config.IndexResource._namaskah_home = route


ANSWER_ATTRIBUTE = "_namaskah_answer"  # a dialect handler's answer on the request (github/webhook.py sets it)


def apply_change_hook_answer() -> None:
    """A change hook's body is the handler's answer when it gives one (idempotent)."""
    if getattr(change_hook.ChangeHookResource, "_namaskah_answer", False):
        return

    @defer.inlineCallbacks
    def getAndSubmitChanges(self, request):
        changes, src = yield self.getChanges(request)
        answer = getattr(request, ANSWER_ATTRIBUTE, None)
        if changes:
            yield self.submitChanges(changes, request, src)
        if answer is not None:
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            request.write(unicode2bytes(answer))
        elif not changes:
            request.write(b"no change found")
        else:
            request.write(unicode2bytes(f"{len(changes)} change found"))

    change_hook.ChangeHookResource.getAndSubmitChanges = getAndSubmitChanges
    change_hook.ChangeHookResource._namaskah_answer = True


def apply_all() -> None:
    """Every fix of this module; master.cfg calls it before building the config."""
    apply_change_hook_answer()
    apply_rest_write_fix()
    apply_matcher_compile_fix()
    apply_home_page()
