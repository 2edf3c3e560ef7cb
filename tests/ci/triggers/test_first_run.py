"""The first run builds the head of the default branch the git poller recorded at its first poll,
pinned, once: never before that poll (it waits, bounded, without holding up the master's start),
never a revision the poller already made a change of, never again after a pipeline ran. Driven
through Buildbot's scheduler harness with a real (unstarted) GitPoller whose first poll is set."""

from __future__ import annotations

from buildbot.changes.gitpoller import GitPoller
from buildbot.test import fakedb
from buildbot.test.reactor import TestReactorMixin
from buildbot.test.util.scheduler import SchedulerMixin
from twisted.internet import defer
from twisted.trial import unittest

from namaskah_ci.triggers.first_run import MIN_WAIT_SECONDS, STATE_KEY, FirstRunScheduler

REPO = "/srv/repo.git"
HEAD = "1091654" + "a" * 33
OLDER = "b" * 40


class FirstRunTest(SchedulerMixin, TestReactorMixin, unittest.TestCase):
    OBJECTID = 19
    SCHEDULERID = 9

    @defer.inlineCallbacks
    def setUp(self):  # type: ignore[override]  # trial waits for the Deferred a setUp returns
        self.setup_test_reactor()
        yield self.setUpScheduler()
        self.poller = GitPoller(repourl=REPO, branches=True, pollInterval=2, workdir="gitpoller-work")

    @defer.inlineCallbacks
    def make(self, rows=()):
        scheduler = FirstRunScheduler(name="first-run", builderNames=["pipeline"], branch="main", repository=REPO)
        yield self.attachScheduler(
            scheduler, self.OBJECTID, self.SCHEDULERID, overrideBuildsetMethods=True, createBuilderDB=True
        )
        yield scheduler.reconfigServiceWithSibling(scheduler)
        # what its reconfigService sets (it needs a running master); never started: no git here
        self.poller.repourl, self.poller.pollInterval, self.poller.lastRev = REPO, 2, None
        self.master.change_svc = [self.poller]
        if rows:
            yield self.master.db.insert_test_data(list(rows))
        return scheduler

    def first_poll(self, heads):
        self.poller.lastRev = dict(heads)

    @defer.inlineCallbacks
    def test_it_waits_for_the_pollers_first_poll_and_builds_that_head_pinned(self):
        scheduler = yield self.make()
        yield scheduler.activate()
        self.reactor.advance(5)
        self.assertEqual(self.addBuildsetCalls, [])  # the poller has not polled: nothing yet
        self.first_poll({"main": HEAD, "develop": OLDER})
        self.reactor.advance(1)
        yield scheduler.started
        [(method, call)] = self.addBuildsetCalls
        self.assertEqual(method, "addBuildsetForSourceStamps")
        self.assertEqual([stamp["revision"] for stamp in call["sourcestamps"]], [HEAD])
        self.assertEqual(call["reason"], "first run: the newest revision of main")
        done = yield scheduler.getState(STATE_KEY, False)
        self.assertTrue(done)

    @defer.inlineCallbacks
    def test_a_revision_the_poller_already_built_is_not_built_again(self):
        rows = [
            fakedb.SourceStamp(id=81, branch="main", revision=HEAD),
            fakedb.Change(changeid=1, branch="main", revision=HEAD, sourcestampid=81),
        ]
        scheduler = yield self.make(rows)
        self.first_poll({"refs/heads/main": HEAD})
        yield scheduler.activate()
        yield scheduler.started
        self.assertEqual(self.addBuildsetCalls, [])

    @defer.inlineCallbacks
    def test_once_per_database(self):
        scheduler = yield self.make()
        yield scheduler.setState(STATE_KEY, True)
        self.first_poll({"main": HEAD})
        yield scheduler.activate()
        yield scheduler.started
        self.assertEqual(self.addBuildsetCalls, [])

    @defer.inlineCallbacks
    def test_no_poll_in_time_builds_nothing_and_tries_again_at_the_next_start(self):
        scheduler = yield self.make()
        yield scheduler.activate()
        self.reactor.pump([1] * (MIN_WAIT_SECONDS + 2))
        yield scheduler.started
        self.assertEqual(self.addBuildsetCalls, [])
        done = yield scheduler.getState(STATE_KEY, False)
        self.assertFalse(done)
