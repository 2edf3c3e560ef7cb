"""Which worker a job build gets: reused builds on `reuse`, others on the least busy engine."""

from __future__ import annotations

from types import SimpleNamespace

from buildbot.process.properties import Properties

from namaskah_ci import names
from namaskah_ci.jobs.placement import JobSlots, select_worker


class Wfb:
    def __init__(self, worker, busy=False):
        self.worker, self.busy = worker, busy

    def isBusy(self):
        return self.busy


def worker(name, engine=None, busy=0):
    w = SimpleNamespace(workername=name, workerforbuilders={})
    if engine is not None:
        w.docker_host = engine
    for index in range(busy):
        w.workerforbuilders[f"b{index}"] = Wfb(w, busy=True)
    return w


def request(reused=False):
    props = Properties()
    if reused:
        props.setProperty(names.PROP_REUSED, {"builder": "lint", "number": 1}, "test")
    return SimpleNamespace(properties=props)


def builder(*workers):
    manager = SimpleNamespace(workers={w.workername: w for w in workers})  # the master's WorkerManager
    return SimpleNamespace(master=SimpleNamespace(workers=manager))


def test_reused_builds_go_to_the_reuse_worker_and_no_other_build_does():
    local, reuse = worker("local-lint"), worker(names.REUSE_WORKER)
    free = [Wfb(local), Wfb(reuse)]
    assert select_worker(builder(local, reuse), free, request(reused=True)).worker is reuse
    assert select_worker(builder(local, reuse), free, request()).worker is local
    assert select_worker(builder(reuse), [Wfb(reuse)], request()) is None
    can_start = JobSlots(1, ["lint"])
    assert can_start(builder(local, reuse), Wfb(reuse), request(reused=True))
    assert not can_start(builder(local, reuse), Wfb(local), request(reused=True))


def test_a_job_build_starts_only_while_a_slot_is_free():
    lint, test = worker("local-lint"), worker("local-test-py3_9")
    reuse = worker(names.REUSE_WORKER, busy=3)  # reused builds: no slot
    deploy = worker("local-deploy-production", busy=1)  # not a job builder
    slots = JobSlots(2, ["lint", "test-py3.9"])
    everyone = builder(lint, test, reuse, deploy)
    assert slots(everyone, Wfb(lint), request())
    test.workerforbuilders["test-py3.9"] = Wfb(test, busy=True)
    assert slots(everyone, Wfb(lint), request())  # one of two taken
    lint.workerforbuilders["lint"] = Wfb(lint, busy=True)
    other = worker("local-lint-s2")
    assert not slots(builder(lint, other, test, reuse, deploy), Wfb(other), request())  # both taken
    assert slots(builder(lint, other, test, reuse, deploy), Wfb(reuse), request(reused=True))  # reuse: always
    assert JobSlots(2, ["a"]) == JobSlots(2, ["a"]) and JobSlots(2, ["a"]) != JobSlots(3, ["a"])
