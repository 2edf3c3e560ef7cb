"""fixes/log_stream.py: a log reader that goes away never holds the log-compression thread.

Real Twisted reactor and a real one-thread pool, as Buildbot's `DBLogCompression` pool is on a
2-core machine. Each test makes the stream's producer wait for its reader the way the raw-log
download left it (buildbot 4.3.0's `_async_iter_on_pool` kept the thread forever: the next task
on the pool never ran), then checks that the one thread runs the next task within seconds.
"""

from __future__ import annotations

import gc
import threading
from typing import cast

from twisted.internet import defer, reactor, threads
from twisted.internet.interfaces import IReactorFromThreads, IReactorTime
from twisted.python.threadpool import ThreadPool
from twisted.trial import unittest

from namaskah_ci.fixes import log_stream

LINES = 5000
FREE_WITHIN = 5  # seconds: the freed thread runs the next task well within this


def numbered_lines():
    for number in range(LINES):
        yield f"{number}\n"


class DaemonThread(threading.Thread):
    """The pool's threads: a test failing on a stuck producer must not keep pytest from exiting."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.daemon = True


class AbandonedLogStreams(unittest.TestCase):
    timeout = 60

    def setUp(self):
        self.pool = ThreadPool(1, 1, "test-DBLogCompression")
        self.pool.threadFactory = DaemonThread
        self.pool.start()
        self.freed = False

    def tearDown(self):
        if self.freed:
            self.pool.stop()  # joining a thread still stuck would hang: only a freed pool is stopped

    def stream(self, max_backlog=0):
        return log_stream.iter_on_pool(
            numbered_lines, reactor=reactor, provider_threadpool=self.pool, max_backlog=max_backlog
        )

    @defer.inlineCallbacks
    def assert_thread_freed(self):
        free = threads.deferToThreadPool(cast(IReactorFromThreads, reactor), self.pool, lambda: "free")
        free.addTimeout(FREE_WITHIN, cast(IReactorTime, reactor))  # the global reactor provides both
        self.assertEqual((yield free), "free")
        self.freed = True

    @defer.inlineCallbacks
    def test_a_reader_that_closes_the_stream_after_one_line_frees_the_thread(self):
        lines = self.stream()
        first = yield defer.Deferred.fromCoroutine(lines.__anext__())
        self.assertEqual(first, "0\n")
        yield defer.Deferred.fromCoroutine(lines.aclose())
        yield self.assert_thread_freed()

    @defer.inlineCallbacks
    def test_a_reader_that_drops_the_stream_frees_the_thread(self):
        lines = self.stream()
        yield defer.Deferred.fromCoroutine(lines.__anext__())
        del lines  # as the raw-log endpoint left it when its client disconnected
        gc.collect()
        yield self.assert_thread_freed()

    @defer.inlineCallbacks
    def test_a_stalled_reader_mid_stream_gets_an_error_and_the_thread_is_freed(self):
        self.patch(log_stream, "STALL_SECONDS", 0.5)
        self.patch(log_stream, "POLL_SECONDS", 0.1)
        lines = self.stream(max_backlog=1)
        yield defer.Deferred.fromCoroutine(lines.__anext__())
        yield self.assert_thread_freed()  # the reader holds the stream but takes nothing

        async def read_rest():
            return [line async for line in lines]

        failure = yield self.assertFailure(defer.Deferred.fromCoroutine(read_rest()), log_stream.StreamStopped)
        self.assertIn("the log reader took nothing", str(failure))

    @defer.inlineCallbacks
    def test_a_stopping_master_frees_a_waiting_producer(self):
        self.patch(log_stream, "POLL_SECONDS", 0.1)
        lines = self.stream(max_backlog=1)
        yield defer.Deferred.fromCoroutine(lines.__anext__())
        log_stream._stopping_event(self.pool).set()  # what LogsConnectorComponent.stopService now does
        yield self.assert_thread_freed()
        yield defer.Deferred.fromCoroutine(lines.aclose())

    @defer.inlineCallbacks
    def test_a_reader_that_reads_everything_gets_every_line_in_order(self):
        async def read_all(lines):
            return [line async for line in lines]

        for backlog in (0, 1, 100):
            everything = yield defer.Deferred.fromCoroutine(read_all(self.stream(max_backlog=backlog)))
            self.assertEqual(everything, list(numbered_lines()))
        yield self.assert_thread_freed()


def test_apply_installs_the_fix_once():
    from buildbot.db import logs
    from buildbot.www import rest

    log_stream.apply()
    stop = logs.LogsConnectorComponent.stopService
    log_stream.apply()
    assert logs._async_iter_on_pool is log_stream.iter_on_pool
    assert rest.V2RootResource._render_raw is log_stream._render_raw
    assert logs.LogsConnectorComponent.stopService is stop  # not wrapped twice
