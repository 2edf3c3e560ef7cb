"""buildbot#9065: the REST API writes its response from a thread (responses cut short under load).

Buildbot 4.3.0 encodes JSON in a thread and also *writes* the response from
that thread. Twisted is not thread-safe, so under load a response can be cut
short (clients see IncompleteRead / "transfer closed with N bytes remaining").
The replacement still encodes in the thread but hands the bytes to the reactor
thread to send.
"""

from __future__ import annotations

import json
from typing import Any

from buildbot.util import unicode2bytes
from buildbot.www import rest
from twisted.internet import reactor, threads


def _write_json_data(request: Any, encoder: json.JSONEncoder, data: Any) -> None:
    """Runs in a worker thread: encode here, write in the reactor."""
    body = b"".join(unicode2bytes(chunk) for chunk in encoder.iterencode(data))

    def send() -> None:
        if rest._is_request_finished(request):
            return
        request.setHeader(b"content-length", unicode2bytes(str(len(body))))
        if request.method != b"HEAD":
            request.write(body)

    threads.blockingCallFromThread(reactor, send)  # type: ignore[no-untyped-call]  # Twisted leaves it unannotated


def apply() -> None:
    """Replace the thread-unsafe REST writer (idempotent)."""
    rest.V2RootResource._write_json_data = staticmethod(_write_json_data)
