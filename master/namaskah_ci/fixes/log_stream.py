"""Log streaming: a reader that goes away never holds Buildbot's log-compression thread.

The bug (Buildbot 4.3.0, `buildbot/db/logs.py` `_async_iter_on_pool`): a log
is read by a producer thread in the `DBLogCompression` pool (one thread on a
2-core machine) handing lines to an async generator on the reactor. After
the last line the producer waits in `condition.wait_for(...)`, without a
timeout, until the reader has taken every line handed over. The raw-log
endpoint (`www/rest.py` `V2RootResource._render_raw`) stops reading when its
client disconnects and drops the generator: the lines already handed over
are never taken, the producer waits forever, every later log read and every
log compression queues behind it (each log download times out, new build
logs stop being stored), and at shutdown the pool's `join()` blocks the
reactor thread for good (SIGTERM does nothing; only SIGKILL ends it).

Upstream: the symptom matches buildbot/buildbot#8306 ("Scrolling through big
log file quickly permanently breaks twisted", closed) but 4.3.0 still has the
cause; not filed upstream as this cause; reproduction: a finished build with
a ~100 KB stdio log (`seq 1 20000`), then `curl -s
http://master:8010/api/v2/logs/<id>/raw | head -c 300` a few times (the
client must close while the master still streams; 5 of 6 tries here); the
next `curl .../raw` hangs, `py-spy dump` shows the `DBLogCompression` thread
in `_provider_wrapped`'s `condition.wait_for(lambda: len(queue.pending) <= 0)`,
and `buildbot stop` never ends after "BuildMaster is stopped".

The fix (`apply()`):
- `buildbot.db.logs._async_iter_on_pool` is replaced by `iter_on_pool`, the
  same contract plus: the producer stops as soon as the async generator is
  closed (by `aclose()`, an exception in its reader, or garbage collection of
  the abandoned generator: its `finally` tells the producer), and none of its
  waits is unbounded: it waits in slices of `POLL_SECONDS`, gives up when the
  logs connector stops (the master is stopping), and gives up when its
  reader takes nothing for `STALL_SECONDS` (a reader alive but stuck). Lines
  not yet handed over then end the stream with `StreamStopped`, so a log is
  never silently cut short; after the last line it just stops waiting;
- `V2RootResource._render_raw` closes the log generator when it stops,
  whether the download finished, failed or its client went away (it checks
  before each line, as upstream does), instead of leaving it to the garbage
  collector.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncGenerator, Callable, Generator
from typing import Any, TypeVar

from twisted.internet import defer, threads
from twisted.python import log
from twisted.python.failure import Failure

_T = TypeVar("_T")
POLL_SECONDS = 1.0  # a waiting producer looks at "reader gone" / "master stopping" at least this often
STALL_SECONDS = 60.0  # a reader that takes nothing for this long is treated as gone (with an error)
STOPPING = "_namaskah_stopping"  # attribute of a compression pool: an Event set while its connector stops
_ORIGINALS: dict[str, Any] = {}


class StreamStopped(Exception):
    """The producer of a log stream gave up: the master is stopping, or its reader stalled."""


def _stopping_event(pool: Any) -> threading.Event:
    event = getattr(pool, STOPPING, None)
    if event is None:
        event = threading.Event()
        setattr(pool, STOPPING, event)
    return event


class _Handover:
    """One stream's hand-over between its producer thread and its reader on the reactor."""

    def __init__(self, queue: defer.DeferredQueue[Any], stopping: threading.Event, max_backlog: int):
        self.queue, self.stopping, self.max_backlog = queue, stopping, max_backlog
        self.condition = threading.Condition()
        self.reader_gone = threading.Event()
        self.taken = 0  # items the reader took (under `condition`): progress resets the stall clock

    def can_put(self) -> bool:
        return self.max_backlog <= 0 or len(self.queue.pending) < self.max_backlog

    def drained(self) -> bool:
        return len(self.queue.pending) <= 0

    def wait(self, ready: Callable[[], bool], handed_over: bool = False) -> bool:
        """Wait until `ready()`; False when the reader is gone. Stopping or a stalled reader: mid-stream
        StreamStopped (lines are missing); once every line is handed over (`handed_over`), False."""
        with self.condition:
            seen, deadline = self.taken, time.monotonic() + STALL_SECONDS
            while not self.reader_gone.is_set():
                if ready():
                    return True
                if self.taken != seen:
                    seen, deadline = self.taken, time.monotonic() + STALL_SECONDS
                left = deadline - time.monotonic()
                if self.stopping.is_set() or left <= 0:
                    if handed_over:
                        return False
                    why = "the master is stopping" if self.stopping.is_set() else "the log reader took nothing"
                    raise StreamStopped(f"{why} ({STALL_SECONDS:.0f} s at most)")
                self.condition.wait(min(left, POLL_SECONDS))
            return False

    def produce(self, generator_sync: Callable[[], Generator[Any, None, None]], reactor: Any, drain: bool) -> None:
        """The producer thread: hand each item over while the reader is there."""
        try:
            for item in generator_sync():
                if not self.wait(self.can_put):
                    return
                reactor.callFromThread(self.queue.put, item)
        finally:
            if drain:  # upstream: free the thread only once the reader took every line
                self.wait(self.drained, handed_over=True)

    def took_one(self) -> None:
        with self.condition:
            self.taken += 1
            self.condition.notify()

    def reader_left(self) -> None:
        self.reader_gone.set()  # closed, failed or collected: the producer stops at its next step
        with self.condition:
            self.condition.notify_all()


def _after_reader_left(failure: Failure) -> None:
    log.msg(f"log stream: the producer ended after its reader left: {failure.getErrorMessage()}")


async def iter_on_pool(
    generator_sync: Callable[[], Generator[_T, None, None]],
    *,
    reactor: Any,
    provider_threadpool: Any = None,
    max_backlog: int = 1,
    wait_backlog_consuption: bool = True,
) -> AsyncGenerator[_T, None]:
    """`buildbot.db.logs._async_iter_on_pool` with a producer that stops when its reader goes away
    and waits boundedly (see the module docstring); same arguments, same items, same errors."""
    from buildbot.config.master import get_is_in_unit_tests

    if provider_threadpool is None:
        provider_threadpool = reactor.getThreadPool()
    if get_is_in_unit_tests():
        from buildbot.test.fake.reactor import NonThreadPool

        if isinstance(provider_threadpool, NonThreadPool):  # runs in the caller's thread: never wait
            max_backlog, wait_backlog_consuption = 0, False

    queue: defer.DeferredQueue[Any] = defer.DeferredQueue()  # the items, then `close`
    handover = _Handover(queue, _stopping_event(provider_threadpool), max_backlog)
    close = object()

    def put_close(result: Any) -> Any:
        queue.put(close)
        return result

    task = threads.deferToThreadPool(
        reactor, provider_threadpool, handover.produce, generator_sync, reactor, wait_backlog_consuption
    ).addBoth(put_close)
    read_all = False
    try:
        while (item := await queue.get()) is not close:
            handover.took_one()
            yield item
        read_all = True
    finally:
        handover.reader_left()
        if not read_all:
            task.addErrback(_after_reader_left)  # nobody will await its error
    if isinstance(task.result, Failure):
        await task  # the producer's error, raised to the reader


async def _render_raw(self: Any, request: Any, ep: Any, rspec: Any, kwargs: dict[str, Any]) -> None:
    """`V2RootResource._render_raw` of Buildbot 4.3.0 that closes the log stream when it stops."""
    from buildbot.data.base import EndpointKind
    from buildbot.util import unicode2bytes
    from buildbot.www.rest import _is_request_finished

    assert ep.kind in (EndpointKind.RAW, EndpointKind.RAW_INLINE)
    try:
        data = await ep.stream(rspec, kwargs)
        is_stream = True
    except NotImplementedError:
        data = await ep.get(rspec, kwargs)
        is_stream = False
    if data is None:
        self._write_not_found_rest_error(request, ep, rspec=rspec, kwargs=kwargs)
        return
    lines = data["raw"]
    try:
        request.setHeader(b"content-type", unicode2bytes(data["mime-type"]) + b"; charset=utf-8")
        if ep.kind != EndpointKind.RAW_INLINE:
            request.setHeader(b"content-disposition", b"attachment; filename=" + unicode2bytes(data["filename"]))
        if not is_stream:
            request.write(unicode2bytes(lines))
            return
        async for chunk in lines:
            if _is_request_finished(request):  # the client went away: read no further
                return
            request.write(unicode2bytes(chunk))
    finally:
        if is_stream:
            await lines.aclose()


def _stop_service(original: Callable[..., Any]) -> Callable[..., Any]:
    def stopService(self: Any) -> Any:
        _stopping_event(self._compression_pool).set()  # waiting producers give up: the pool can join
        return original(self)

    stopService.namaskah_original = original  # type: ignore[attr-defined]  # a marker on the replacement function
    return stopService


def _start_service(original: Callable[..., Any]) -> Callable[..., Any]:
    def startService(self: Any) -> Any:
        _stopping_event(self._compression_pool).clear()
        return original(self)

    startService.namaskah_original = original  # type: ignore[attr-defined]  # a marker on the replacement function
    return startService


def apply() -> None:
    """Install the bounded log stream, the closing raw-log renderer and the stop signal (idempotent)."""
    from buildbot.db import logs
    from buildbot.www import rest

    if logs._async_iter_on_pool is iter_on_pool:
        return
    _ORIGINALS.update(
        iter=logs._async_iter_on_pool,
        render=rest.V2RootResource._render_raw,
        stop=logs.LogsConnectorComponent.stopService,
        start=logs.LogsConnectorComponent.startService,
    )
    logs._async_iter_on_pool = iter_on_pool
    rest.V2RootResource._render_raw = _render_raw
    logs.LogsConnectorComponent.stopService = _stop_service(_ORIGINALS["stop"])
    logs.LogsConnectorComponent.startService = _start_service(_ORIGINALS["start"])
