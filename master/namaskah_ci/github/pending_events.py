"""Pull request events the hook has answered but not yet recorded: kept so a crash loses none.

The hook saves a `pull_request` event here before it answers (one small write
to Buildbot's `object_state` table), works on it after answering
(`github/pull_requests.py`), and removes it once done. `PendingPullRequests`, a
service of the master, does the work again for every event still saved when
the master starts (it crashed, or was stopped, in between); recording is
idempotent there: a change already recorded for that PR at that revision is
not recorded twice.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Generator, Iterable
from typing import Any, TypeVar

from buildbot.util import service
from twisted.internet import defer
from twisted.python import log

from namaskah_ci.github.payloads import PullRequest
from namaskah_ci.github.pull_requests import PullRequests
from namaskah_ci.per_master import per_master
from namaskah_ci.pipeline.source import PipelineConfig

OBJECT_NAME = "namaskah-webhook"
OBJECT_CLASS = "PendingPullRequests"
STATE_KEY = "pending"
Saved = dict[str, dict[str, Any]]  # {id: the event's PullRequest fields}
_T = TypeVar("_T")


class PendingStore:
    """{id: event} in the database; read-modify-write serialised per master."""

    def __init__(self, master: Any):
        self.master = master
        self.lock = defer.DeferredLock()

    @defer.inlineCallbacks
    def _update(self, change: Callable[[Saved], _T]) -> Generator[Any, Any, _T]:
        yield self.lock.acquire()
        try:
            objectid = yield self.master.db.state.getObjectId(OBJECT_NAME, OBJECT_CLASS)
            saved = yield self.master.db.state.getState(objectid, STATE_KEY, {})
            pending: Saved = dict(saved) if isinstance(saved, dict) else {}
            result = change(pending)
            yield self.master.db.state.setState(objectid, STATE_KEY, pending)
            return result
        finally:
            self.lock.release()

    def add(self, pr: PullRequest) -> defer.Deferred[str]:
        """Save `pr`; fires with its id."""
        key = uuid.uuid4().hex

        def put(pending: Saved) -> str:
            pending[key] = dataclasses.asdict(pr)
            return key

        return self._update(put)

    def done(self, key: str) -> defer.Deferred[dict[str, Any] | None]:
        return self._update(lambda pending: pending.pop(key, None))

    def all(self) -> defer.Deferred[Saved]:
        return self._update(dict)


def store_for(master: Any) -> PendingStore:
    return per_master(master, "pending_prs", PendingStore)


@defer.inlineCallbacks
def process(
    pull_requests: PullRequests, store: PendingStore, key: str, pr: PullRequest, replay: bool = False
) -> Generator[Any, Any, None]:
    """Record or cancel `pr`, then forget it (a failure leaves it saved for the next start)."""
    if pr.action == "closed":
        yield pull_requests.cancel(pr, f"pull request #{pr.number} was closed")
    else:
        yield pull_requests.record(pr, replay=replay)
    yield store.done(key)


class PendingPullRequests(service.BuildbotService):
    """At start: finish the pull request events a stopped master had answered but not recorded."""

    name = "pending-pull-requests"

    def reconfigService(
        self, pipeline_config: PipelineConfig, merge_ref_waits: Iterable[float] = ()
    ) -> defer.Deferred[None]:
        self.pull_requests = PullRequests(self.master, pipeline_config, tuple(merge_ref_waits))
        done: defer.Deferred[None] = super().reconfigService()
        return done

    def startService(self) -> defer.Deferred[None]:
        result: defer.Deferred[None] = super().startService()
        self.master.reactor.callLater(0, self.replay)
        return result

    def replay(self) -> defer.Deferred[None]:
        return replay(self.master, self.pull_requests)


@defer.inlineCallbacks
def replay(master: Any, pull_requests: PullRequests) -> Generator[Any, Any, None]:
    """Finish every saved event (oldest first)."""
    store = store_for(master)
    try:
        pending = yield store.all()
        for key, saved in sorted(pending.items()):
            pr = PullRequest(**saved)
            log.msg(f"GitHub hook: pull request #{pr.number} {pr.action} was not finished before the restart")
            yield process(pull_requests, store, key, pr, replay=True)
    except Exception as exc:  # logged; the events stay saved for the next start
        log.err(exc, "GitHub hook: finishing saved pull request events failed")  # type: ignore[no-untyped-call]  # Twisted leaves log.err unannotated
