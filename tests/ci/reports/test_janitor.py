"""The reports janitor: report directories older than the retention go, newer ones stay."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from buildbot.config.errors import ConfigErrors
from buildbot.test.fake import fakemaster
from buildbot.test.reactor import TestReactorMixin
from twisted.internet import defer
from twisted.trial import unittest

from namaskah_ci.reports.janitor import ReportsJanitor, remove_old_reports

DAY = 86400
NOW = 1_800_000_000.0


def report_dir(root: Path, builder: str, build: str, age_days: float, now: float = NOW) -> Path:
    path = root / builder / build
    (path / "htmlcov").mkdir(parents=True)
    (path / "coverage.xml").write_text("<coverage/>")
    (path / "htmlcov" / "index.html").write_text("<html/>")
    stamp = now - age_days * DAY
    os.utime(path, (stamp, stamp))
    return path


def test_old_report_directories_are_removed_and_new_ones_kept(tmp_path):
    old = report_dir(tmp_path, "test-py3.11", "3", age_days=31)
    older = report_dir(tmp_path, "lint", "1", age_days=400)
    fresh = report_dir(tmp_path, "test-py3.11", "4", age_days=29)
    today = report_dir(tmp_path, "lint", "2", age_days=0)
    removed = remove_old_reports(str(tmp_path), max_age_days=30, now=NOW)
    assert sorted(removed) == sorted([str(old), str(older)])
    assert not old.exists() and not older.exists()
    assert fresh.is_dir() and (fresh / "coverage.xml").is_file()
    assert today.is_dir()
    assert (tmp_path / "test-py3.11").is_dir() and (tmp_path / "lint").is_dir()


def test_the_limit_follows_the_retention(tmp_path):
    build = report_dir(tmp_path, "security", "9", age_days=8)
    assert remove_old_reports(str(tmp_path), max_age_days=30, now=NOW) == []
    assert remove_old_reports(str(tmp_path), max_age_days=7, now=NOW) == [str(build)]


def test_stray_files_and_a_missing_root_are_left_alone(tmp_path):
    (tmp_path / "README").write_text("not a builder")
    (tmp_path / "lint").mkdir()
    stray = tmp_path / "lint" / "notes.txt"
    stray.write_text("x")
    stamp = NOW - 100 * DAY
    os.utime(stray, (stamp, stamp))
    assert remove_old_reports(str(tmp_path), max_age_days=1, now=NOW) == []
    assert stray.is_file() and (tmp_path / "README").is_file()
    assert remove_old_reports(str(tmp_path / "absent"), max_age_days=1, now=NOW) == []


def test_the_current_time_is_the_default(tmp_path):
    old = report_dir(tmp_path, "lint", "1", age_days=31, now=time.time())
    fresh = report_dir(tmp_path, "lint", "2", age_days=1, now=time.time())
    assert remove_old_reports(str(tmp_path), max_age_days=30) == [str(old)]
    assert fresh.is_dir()


def test_retention_below_one_day_is_a_config_error(tmp_path):
    with pytest.raises(ConfigErrors, match="report retention must be at least one day"):
        ReportsJanitor(root=str(tmp_path), max_age_days=0)


class ReportsJanitorServiceTest(TestReactorMixin, unittest.TestCase):
    def setUp(self):
        self.setup_test_reactor()  # also runs deferToThread work inline

    @defer.inlineCallbacks
    def test_sweeps_when_started_and_stops_cleanly(self):
        root = Path(self.mktemp())
        now = time.time()
        old = report_dir(root, "lint", "1", age_days=45, now=now)
        fresh = report_dir(root, "lint", "2", age_days=2, now=now)
        master = yield fakemaster.make_master(self)
        janitor = ReportsJanitor(root=str(root), max_age_days=30)
        yield janitor.setServiceParent(master)
        yield janitor.startService()
        try:
            self.assertFalse(old.exists())
            self.assertTrue(fresh.is_dir())
            newer_old = report_dir(root, "lint", "3", age_days=45, now=now)
            yield janitor.sweep()
            self.assertFalse(newer_old.exists())
        finally:
            yield janitor.stopService()
        assert janitor._loop is not None
        self.assertFalse(janitor._loop.running)
