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
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet import reactor, threads

from buildbot.util import pathmatch, unicode2bytes
from buildbot.www import rest

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


def apply_all() -> None:
    """Every fix of this module; master.cfg calls it before building the config."""
    apply_rest_write_fix()
    apply_matcher_compile_fix()
