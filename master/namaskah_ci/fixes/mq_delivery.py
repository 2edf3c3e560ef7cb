"""Message delivery: a consumer that stops consuming while a message is delivered hides none from others.

The bug (Buildbot 4.3.0, `buildbot/mq/simple.py` `SimpleMQ.produce`): a message
is delivered by iterating over the live list of consumers, and a consumer
may remove itself from that list from inside its callback — every
`mq.waitUntilEvent` does (it fires its Deferred, whose waiter stops
consuming at once). Removing an element while iterating skips the next one:
the consumer subscribed right after it never gets the message.

This is why `buildbot stop --clean` could wait forever with no build
running: the clean shutdown waits for each running build with
`Build.waitUntilFinished()`, an `mq.waitUntilEvent(('builds', id,
'finished'))`. A job build already has such a waiter from its reuse step
(`steps/load.py` releases the job's in-flight key when the build finishes).
When the clean shutdown's waiter sits right after it in the list — it does
when nothing else subscribed in between, or when what did has gone since,
such as the web UI's subscriptions of a browser that closed — the job's
"finished" message reaches the first waiter only, the clean shutdown waits
for a build that has ended, and the master never stops (it keeps polling).
Two waiters for the same build in one shutdown (a SIGTERM during a clean
shutdown: fixes/clean_shutdown.py) miss it the same way.

Not filed upstream; reproduction (no master needed): `mq = SimpleMQ()`;
`a = mq.waitUntilEvent(('x',), lambda: False)`; `b = mq.waitUntilEvent(('x',),
lambda: False)`; `mq.produce(('x',), {})`: `a` fires, `b` never does.

The fix (`apply()`): `SimpleMQ.produce` delivers to the consumers subscribed
when the message was produced (a copy of the list); one that stopped
consuming meanwhile has no callback and is passed over, as upstream's
`QueueRef.invoke` already does.
"""

from __future__ import annotations

import pprint
from typing import Any

from twisted.python import log

_ORIGINALS: dict[str, Any] = {}


def produce(self: Any, routingKey: tuple[str | None, ...], data: Any) -> None:
    """`SimpleMQ.produce` over a snapshot of the consumers (see the module docstring)."""
    from buildbot.util import tuplematch

    if self.debug:
        log.msg(f"MSG: {routingKey}\n{pprint.pformat(data)}")
    for qref in list(self.qrefs):
        if tuplematch.matchTuple(routingKey, qref.filter):
            self.invokeQref(qref, routingKey, data)


def apply() -> None:
    """Install the snapshot delivery (idempotent)."""
    from buildbot.mq.simple import SimpleMQ

    if SimpleMQ.produce is produce:
        return
    _ORIGINALS["produce"] = SimpleMQ.produce
    SimpleMQ.produce = produce
