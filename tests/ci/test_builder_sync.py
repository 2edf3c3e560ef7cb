"""A pipeline whose file brings a new job gives it a builder first (`builder_sync.ensure_builders`):
the registry is written, the master reconfigured once, and the pipeline waits (bounded) for it."""

from __future__ import annotations

from pathlib import Path

from twisted.internet import defer, reactor, task
from twisted.trial import unittest

from namaskah_ci.builder_sync import BuilderSyncError, ensure_builders
from namaskah_ci.job_registry import read_registry
from namaskah_ci.pipeline import load_pipeline

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

        return task.deferLater(reactor, 0.2, apply)


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
