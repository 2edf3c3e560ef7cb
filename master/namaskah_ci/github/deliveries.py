"""GitHub deliveries already processed, by `X-GitHub-Delivery` id, so a redelivery does nothing.

`DeliveryLog.first_time(id)` answers (and notes the id at once, so two copies
arriving together are told apart); the ids are saved in Buildbot's
`object_state` table (SQLite or PostgreSQL) before the hook answers, so a
redelivery days later, after restarts or a crash, is still recognised. The newest `limit`
ids are kept. One log per master (`for_master`).
"""

from __future__ import annotations

import collections
from collections.abc import Generator
from typing import Any

from twisted.internet import defer
from twisted.python import log
from twisted.python.failure import Failure

from namaskah_ci.per_master import per_master

OBJECT_NAME = "namaskah-webhook"
OBJECT_CLASS = "GitHubDeliveries"
STATE_KEY = "recent"
LIMIT = 2000


class DeliveryLog:
    def __init__(self, master: Any, limit: int = LIMIT):
        self.master = master
        self.limit = limit
        self.ids: collections.OrderedDict[str, bool] = collections.OrderedDict()
        self.loaded: defer.Deferred[int | None] | None = None  # the state's object id (None: not read)
        self.saving = defer.DeferredLock()

    @defer.inlineCallbacks
    def _load(self) -> Generator[Any, Any, int | None]:
        """The state's object id, after reading the ids saved there."""
        objectid: int = yield self.master.db.state.getObjectId(OBJECT_NAME, OBJECT_CLASS)
        saved = yield self.master.db.state.getState(objectid, STATE_KEY, [])
        for delivery in saved if isinstance(saved, list) else []:
            self.ids[str(delivery)] = True
        return objectid

    def _ready(self) -> defer.Deferred[int | None]:
        """The object id once the saved ids are read; None when reading them failed (then the next
        call reads again: `_load_failed` forgets `loaded`, at once when the read failed at once)."""
        loaded = self.loaded
        if loaded is None:
            loaded = self.loaded = self._load()
            loaded.addErrback(self._load_failed)
        result: defer.Deferred[int | None] = defer.Deferred()

        def hand_over(value: int | Failure | None) -> int | Failure | None:
            result.callback(value)
            return value

        loaded.addBoth(hand_over)
        return result

    def _load_failed(self, failure: Failure) -> None:
        log.err(failure, "GitHub hook: cannot read the delivery ids already processed")  # type: ignore[no-untyped-call]  # Twisted leaves log.err unannotated
        self.loaded = None
        return None

    @defer.inlineCallbacks
    def first_time(self, delivery: str) -> Generator[Any, Any, bool]:
        """True the first time `delivery` is seen (then remembered); False for a redelivery."""
        yield self._ready()
        if delivery in self.ids:
            return False
        self.ids[delivery] = True
        while len(self.ids) > self.limit:
            self.ids.popitem(last=False)
        return True

    def forget(self, delivery: str) -> None:
        """The delivery was refused after all (it may be delivered again)."""
        self.ids.pop(delivery, None)

    @defer.inlineCallbacks
    def save(self) -> Generator[Any, Any, None]:
        """Write the ids to the database (serialised)."""
        yield self.saving.acquire()
        try:
            objectid = yield self._ready()
            if objectid is not None:
                yield self.master.db.state.setState(objectid, STATE_KEY, list(self.ids))
        except Exception as exc:  # the delivery was handled: log, the ids stay in memory
            log.msg(f"GitHub hook: cannot save the delivery ids: {exc}")
        finally:
            self.saving.release()


def for_master(master: Any) -> DeliveryLog:
    return per_master(master, "deliveries", DeliveryLog)
