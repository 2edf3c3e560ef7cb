"""GitHub deliveries already processed, by `X-GitHub-Delivery` id, so a redelivery does nothing.

`DeliveryLog.first_time(id)` answers (and notes the id at once, so two copies
arriving together are told apart); the ids are saved in Buildbot's
`object_state` table (SQLite or PostgreSQL) before the hook answers, so a
redelivery days later, after restarts or a crash, is still recognised. The newest `limit`
ids are kept. One log per master (`for_master`).
"""

from __future__ import annotations

import collections

from twisted.internet import defer
from twisted.python import log

from namaskah_ci.per_master import per_master

OBJECT_NAME = "namaskah-webhook"
OBJECT_CLASS = "GitHubDeliveries"
STATE_KEY = "recent"
LIMIT = 2000


class DeliveryLog:
    def __init__(self, master, limit: int = LIMIT):
        self.master = master
        self.limit = limit
        self.ids: collections.OrderedDict = collections.OrderedDict()
        self.loaded: defer.Deferred | None = None
        self.saving = defer.DeferredLock()

    @defer.inlineCallbacks
    def _load(self):
        objectid = yield self.master.db.state.getObjectId(OBJECT_NAME, OBJECT_CLASS)
        saved = yield self.master.db.state.getState(objectid, STATE_KEY, [])
        for delivery in saved if isinstance(saved, list) else []:
            self.ids[str(delivery)] = True
        return objectid

    def _ready(self) -> defer.Deferred:
        if self.loaded is None:
            self.loaded = self._load()
            self.loaded.addErrback(self._load_failed)
        result: defer.Deferred = defer.Deferred()
        self.loaded.addBoth(lambda value: (result.callback(value), value)[1])
        return result

    def _load_failed(self, failure):
        log.err(failure, "GitHub hook: cannot read the delivery ids already processed")
        self.loaded = None
        return None

    @defer.inlineCallbacks
    def first_time(self, delivery: str):
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
    def save(self):
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


def for_master(master) -> DeliveryLog:
    return per_master(master, "deliveries", DeliveryLog)
