"""Which worker a job build gets: reused builds on `reuse`, others on the least busy engine."""

from __future__ import annotations

from types import SimpleNamespace

from buildbot.process.properties import Properties

from namaskah_ci import names
from namaskah_ci.placement import can_start, engine_load, select_worker


class Wfb:
    def __init__(self, worker, busy=False):
        self.worker, self.busy = worker, busy

    def isBusy(self):  # noqa: N802 (Buildbot's name)
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
    assert can_start(None, Wfb(reuse), request(reused=True)) and not can_start(None, Wfb(local), request(True))


def test_a_build_goes_to_the_engine_running_fewest_jobs():
    one, two = "unix:///run/docker.sock", "unix:///run/docker2.sock"
    busy_one = worker("docker-test-py3_9", one, busy=1)  # another builder's job runs on engine one
    lint_one, lint_two = worker("docker-lint", one), worker("docker-lint-h2", two)
    every = builder(busy_one, lint_one, lint_two)
    assert engine_load(every.master.workers.workers.values()) == {one: 1, two: 0}
    for _ in range(20):
        assert select_worker(every, [Wfb(lint_one), Wfb(lint_two)], request()).worker is lint_two
    # equal load: either engine
    idle = builder(lint_one, lint_two)
    chosen = {select_worker(idle, [Wfb(lint_one), Wfb(lint_two)], request()).worker.workername for _ in range(60)}
    assert chosen == {"docker-lint", "docker-lint-h2"}
    # a quarantined worker is not offered by Buildbot: the other engine's is taken whatever the load
    assert select_worker(every, [Wfb(lint_one)], request()).worker is lint_one
