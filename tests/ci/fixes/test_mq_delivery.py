"""fixes/mq_delivery.py: every consumer subscribed to a message gets it, even when another one stops
consuming while that message is delivered (as each `mq.waitUntilEvent` does).

Buildbot 4.3.0's SimpleMQ skipped the consumer after one that stopped: a clean shutdown waiting for a
job build's end right after the job's own reuse-step waiter never saw the build end.
"""

from __future__ import annotations

from buildbot.mq.simple import SimpleMQ

from namaskah_ci.fixes import mq_delivery


def test_two_waiters_for_the_same_event_both_see_it():
    mq_delivery.apply()
    mq = SimpleMQ()
    first = mq.waitUntilEvent(("builds", "7", "finished"), lambda: False)
    second = mq.waitUntilEvent(("builds", "7", "finished"), lambda: False)
    mq.produce(("builds", "7", "finished"), {"buildid": 7})
    assert first.called and second.called
    assert not mq.qrefs  # both stopped consuming


def test_a_consumer_that_stopped_before_the_message_gets_nothing_and_later_ones_still_do():
    mq_delivery.apply()
    mq = SimpleMQ()
    got = []
    stopped = mq.startConsuming(lambda key, data: got.append(("stopped", key)), ("x", None)).result
    kept = mq.startConsuming(lambda key, data: got.append(("kept", key)), ("x", None)).result
    stopped.stopConsuming()
    mq.produce(("x", "1"), {})
    assert got == [("kept", ("x", "1"))]
    kept.stopConsuming()


def test_apply_is_idempotent():
    mq_delivery.apply()
    mq_delivery.apply()
    assert SimpleMQ.produce is mq_delivery.produce
