"""A pipeline whose file brings a new job gives it a builder first (`builder_sync.ensure_builders`):
the registry is written, the master reconfigured once, and the pipeline waits (bounded) for it."""

from __future__ import annotations

from pathlib import Path
from typing import cast

from twisted.internet import defer, reactor, task
from twisted.internet.interfaces import IReactorTime
from twisted.trial import unittest

from namaskah_ci.jobs.builder_sync import BuilderSyncError, ensure_builders
from namaskah_ci.pipeline.model import load_pipeline
from namaskah_ci.pipeline.registry import Registry, read_registry

PIPELINE = load_pipeline("version: 1\njobs:\n  lint:\n    steps: [x]\n  docs:\n    steps: [y]\n", "f")


class FakeMaster:
    """Reconfiguring reads the registry, as build_config does, after a short delay."""

    def __init__(self, registry_path: str, works: bool = True):
        self.registry_path = registry_path
        self.works = works
        self.reconfigs = 0
        self.reconfig_active = False
        self.botmaster = type("BotMaster", (), {"builders": {}})()
        self.scheduler_manager = type("Schedulers", (), {"namedServices": {}})()

    def reconfig(self):
        self.reconfigs += 1

        def apply():
            if self.works:
                for name in read_registry(self.registry_path).builders:
                    self.botmaster.builders[name] = object()
                    self.scheduler_manager.namedServices[f"check-{name}"] = object()

        return task.deferLater(cast(IReactorTime, reactor), 0.2, apply)  # the global reactor provides it


class EnsureBuildersTest(unittest.TestCase):
    def setUp(self):
        self.path = str(Path(self.mktemp()) / "pipeline-builders.json")

    @defer.inlineCallbacks
    def test_new_jobs_get_builders_through_one_reconfig(self):
        master = FakeMaster(self.path)
        added = yield ensure_builders(master, self.path, PIPELINE, on_default_branch=True)
        assert sorted(added) == ["docs", "lint"] and master.reconfigs == 1
        again = yield ensure_builders(master, self.path, PIPELINE, on_default_branch=True)
        assert again == [] and master.reconfigs == 1

    @defer.inlineCallbacks
    def test_a_failed_reconfig_fails_within_the_bound_naming_the_builders(self):
        master = FakeMaster(self.path, works=False)
        with self.assertRaises(BuilderSyncError) as caught:
            yield ensure_builders(master, self.path, PIPELINE, on_default_branch=False, timeout=1)
        assert "builders lint, docs did not appear within 1s" in str(caught.exception)


# --- the registry is bounded ([limits] registered_builders, issue 21) -----------------------------

OTHER = load_pipeline("version: 1\njobs:\n  c:\n    steps: [x]\n  d:\n    steps: [y]\n", "f")


class BoundedRegistryTest(unittest.TestCase):
    def setUp(self):
        self.path = str(Path(self.mktemp()) / "pipeline-builders.json")

    @defer.inlineCallbacks
    def test_builders_past_the_limit_retire_the_longest_unused_never_the_pipelines_own(self):
        master = FakeMaster(self.path)
        yield ensure_builders(master, self.path, PIPELINE, on_default_branch=False, limit=3)
        added = yield ensure_builders(master, self.path, OTHER, on_default_branch=False, limit=3)
        assert sorted(added) == ["c", "d"] and master.reconfigs == 2
        assert read_registry(self.path).builders == ["c", "d", "lint"]  # docs and lint tie: by name

    @defer.inlineCallbacks
    def test_a_builder_running_a_build_is_not_retired(self):
        master = FakeMaster(self.path)
        yield ensure_builders(master, self.path, PIPELINE, on_default_branch=False, limit=3)
        master.botmaster.builders["docs"] = type("Builder", (), {"building": [object()]})()
        yield ensure_builders(master, self.path, OTHER, on_default_branch=False, limit=3)
        assert read_registry(self.path).builders == ["c", "d", "docs"]

    @defer.inlineCallbacks
    def test_a_pipeline_needing_more_builders_than_kept_is_refused_naming_the_key(self):
        master = FakeMaster(self.path)
        with self.assertRaises(BuilderSyncError) as caught:
            yield ensure_builders(master, self.path, PIPELINE, on_default_branch=False, limit=1)
        assert str(caught.exception) == (
            "the pipeline needs 2 job builders, more than the 1 the master keeps ([limits] registered_builders)"
        )
        assert master.reconfigs == 0 and not Path(self.path).exists()


def test_retiring_goes_by_last_use_then_schedule_and_keeps_what_is_asked():
    scheduled = load_pipeline("version: 1\njobs:\n  s:\n    schedule: '0 3 * * 1'\n    steps: [x]\n", "f")
    registry = Registry().merge(scheduled, True, used_at=10).merge(PIPELINE, False, used_at=20)
    registry = registry.merge(OTHER, False, used_at=30)
    assert registry.retire(5).builders == ["c", "d", "docs", "lint", "s"]  # within the limit: unchanged
    assert registry.retire(3).builders == ["c", "d", "s"]  # the scheduled one goes after every other
    assert registry.retire(2).builders == ["d", "s"]  # c and d tie: by name
    assert registry.retire(2, keep=["lint"]).builders == ["lint", "s"]
    assert registry.retire(1, keep=["docs", "lint"]).builders == ["docs", "lint"]  # never one kept


def test_a_later_use_moves_a_builder_back_and_is_no_configuration_change():
    registry = Registry().merge(PIPELINE, False, used_at=100).merge(OTHER, False, used_at=200)
    used = registry.merge(PIPELINE, False, used_at=300)
    assert used == registry  # last use is not configuration: no reconfig for it
    assert used.retire(2).builders == ["docs", "lint"]
    assert registry.merge(PIPELINE, False, used_at=130).retire(2).builders == ["c", "d"]  # within a minute
