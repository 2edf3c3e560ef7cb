"""Give every job of a pipeline its builder before the pipeline triggers it.

`ensure_builders(master, config, pipeline, on_default_branch)` records the
pipeline's builders in the job registry (`pipeline/registry.py`); when that adds a
builder (or changes what the configuration is made of), it reconfigures the
master the way `buildbot reconfig` does and waits, bounded, until every
builder and its Triggerable exist. Reconfiguring was chosen over Buildbot's
virtual builders: a virtual builder has no force button or scheduler of its
own and is listed among "old builders" whenever idle (buildbot#4885), while a
configured builder keeps its history, badge, force form and commit-status
context like any other.

The registry is bounded (`[limits] registered_builders`, `pipeline/registry.py`):
when a pipeline's new builders take it past the limit, the builders unused
longest are retired in the same reconfiguration, never one this pipeline needs
or one running a build.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from typing import Any, cast

from twisted.internet import defer, reactor, task, threads
from twisted.internet.interfaces import IReactorTime
from twisted.python import log

from namaskah_ci import names
from namaskah_ci.per_master import per_master
from namaskah_ci.pipeline.registry import read_registry, write_registry
from namaskah_ci.pipeline.specs import Pipeline

RECONFIG_TIMEOUT = 120.0


class BuilderSyncError(Exception):
    """The new builders did not appear; the message says why."""


def configured(master: Any, builder: str) -> bool:
    schedulers = master.scheduler_manager.namedServices
    return builder in master.botmaster.builders and names.check_scheduler_name(builder) in schedulers


def _update(
    path: str, pipeline: Pipeline, on_default_branch: bool, limit: int | None, keep: set[str]
) -> tuple[bool, list[str]]:
    """Merge, bound and write the registry (in a thread): (whether the configuration changed, retired)."""
    current = read_registry(path)
    updated = current.merge(pipeline, on_default_branch, used_at=int(time.time()))
    if limit is not None:
        updated = updated.retire(limit, keep)
    if updated.to_json() != current.to_json():  # also when only the builders' last use moved
        write_registry(path, updated)
    retired = sorted(set(current.builders) - set(updated.builders))
    return updated != current, retired


@defer.inlineCallbacks
def ensure_builders(
    master: Any,
    registry_path: str,
    pipeline: Pipeline,
    on_default_branch: bool,
    timeout: float = RECONFIG_TIMEOUT,
    limit: int | None = None,
) -> Generator[Any, Any, list[str]]:
    """The builders this call added (empty when every one existed); the registry keeps at most `limit`."""
    if limit is not None and len(pipeline.builders) > limit:
        raise BuilderSyncError(
            f"the pipeline needs {len(pipeline.builders)} job builders, more than the {limit} the master keeps "
            "([limits] registered_builders)"
        )
    running = {name for name, builder in master.botmaster.builders.items() if getattr(builder, "building", None)}
    lock = per_master(master, "builder_sync_lock", lambda _: defer.DeferredLock())  # one registry update at a time
    yield lock.acquire()
    try:
        changed, retired = yield threads.deferToThread(  # type: ignore[no-untyped-call]  # Twisted leaves it unannotated
            _update, registry_path, pipeline, on_default_branch, limit, set(pipeline.builders) | running
        )
    finally:
        lock.release()
    if retired:
        log.msg(
            f"pipeline: retiring the job builders unused longest ([limits] registered_builders): {', '.join(retired)}"
        )
    missing = [builder for builder in pipeline.builders if not configured(master, builder)]
    if not changed and not missing:
        return []
    log.msg(f"pipeline: reconfiguring for job builders {', '.join(missing) or '(definitions changed)'}")
    # a reconfig already running re-runs once it ends (Buildbot's `reconfig_requested`), and reads the
    # registry written above either way
    yield master.reconfig()
    added = list(missing)
    waited = 0.0
    while missing and waited < timeout:
        missing = [builder for builder in missing if not configured(master, builder)]
        if missing:
            yield task.deferLater(cast(IReactorTime, reactor), 0.1, lambda: None)  # the global reactor provides it
            waited += 0.1
    if missing:
        raise BuilderSyncError(
            f"builders {', '.join(missing)} did not appear within {timeout:.0f}s: the master's reconfiguration "
            "failed (see twistd.log)"
        )
    return added
