"""Reading a revision's pipeline file on the master (`pipeline_source`), the job registry and schedules.

Real git repositories: the revision's own file (not the branch head's), the poller's bare repository
first, the master's mirror fetched for revisions the poller never saw, the default pipeline when a
revision has no file, and the one-line errors.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from twisted.internet import defer
from twisted.trial import unittest

from namaskah_ci.pipeline import source as pipeline_source
from namaskah_ci.pipeline.model import PipelineError, PipelinePolicy, load_pipeline
from namaskah_ci.pipeline.registry import Registry, RegistryError, read_registry, write_registry
from namaskah_ci.pipeline.schedule import CronError, parse_cron
from namaskah_ci.pipeline.source import PipelineConfig, PipelineSource, SourceError, describe
from namaskah_ci.text import short
from pipeline_support import entry_of, job_of

FILE_V1 = "version: 1\njobs:\n  lint:\n    steps: [flake8]\n"
FILE_V2 = "version: 1\njobs:\n  lint:\n    steps: [flake8]\n  docs:\n    steps: [sphinx-build docs out]\n"
GIT_ENV = {
    "GIT_AUTHOR_NAME": "T",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "T",
    "GIT_COMMITTER_EMAIL": "t@example.com",
}


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args], cwd=repo, env={**os.environ, **GIT_ENV}, check=True, capture_output=True, text=True, timeout=60
    )
    return done.stdout.strip()


def commit(repo: Path, files: dict[str, str | None], message: str) -> str:
    for name, text in files.items():
        if text is None:
            (repo / name).unlink()
        else:
            (repo / name).write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


class PipelineSourceTest(unittest.TestCase):
    def setUp(self):
        self.tmp = Path(self.mktemp()).resolve()
        self.repo = self.tmp / "repo"
        self.repo.mkdir(parents=True)
        git(self.repo, "init", "-q", "-b", "main")
        self.first = commit(self.repo, {"README": "x\n"}, "no pipeline file")
        self.second = commit(self.repo, {".namaskah-ci.yml": FILE_V1}, "add the file")
        self.third = commit(self.repo, {".namaskah-ci.yml": FILE_V2}, "add docs")
        default = self.tmp / "default.yml"
        default.write_text("version: 1\njobs:\n  test:\n    steps: [pytest]\n")
        self.config = PipelineConfig(
            repo_url=str(self.repo),
            poller_dir=str(self.tmp / "poller"),
            mirror_dir=str(self.tmp / "mirror.git"),
            default_file=str(default),
            default_label="master/default-pipeline.yml",
            registry_path=str(self.tmp / "registry.json"),
            default_branch="main",
            policy=PipelinePolicy(max_bytes=2048),
        )
        self.source = PipelineSource(self.config)

    @defer.inlineCallbacks
    def test_each_revision_gets_its_own_file(self):
        second = yield self.source.pipeline_at(self.second)
        third = yield self.source.pipeline_at(self.third)
        assert second.builders == ["lint"] and third.builders == ["lint", "docs"]
        assert describe(third, self.third) == f".namaskah-ci.yml at {short(self.third)}"

    @defer.inlineCallbacks
    def test_a_revision_without_the_file_gets_the_default_pipeline(self):
        pipeline = yield self.source.pipeline_at(self.first)
        assert pipeline.builders == ["test"]
        assert describe(pipeline, self.first) == (
            f"the default pipeline master/default-pipeline.yml (no .namaskah-ci.yml at {short(self.first)})"
        )

    @defer.inlineCallbacks
    def test_the_pollers_repository_is_read_before_the_mirror_is_fetched(self):
        subprocess.run(["git", "clone", "-q", "--bare", str(self.repo), self.config.poller_dir], check=True)
        pipeline = yield self.source.pipeline_at(self.third)
        assert pipeline.builders == ["lint", "docs"]
        assert not os.path.exists(self.config.mirror_dir), "no fetch needed"

    @defer.inlineCallbacks
    def test_a_newer_commit_is_fetched_into_the_mirror(self):
        yield self.source.pipeline_at(self.second)
        newer = commit(self.repo, {".namaskah-ci.yml": FILE_V1.replace("flake8", "ruff check")}, "ruff")
        pipeline = yield self.source.pipeline_at(newer)
        assert job_of(pipeline, "lint").steps[0].run == "ruff check"

    @defer.inlineCallbacks
    def test_a_branch_resolves_to_its_newest_revision(self):
        git(self.repo, "checkout", "-q", "-b", "feature")
        tip = commit(self.repo, {"x": "1\n"}, "feature work")
        resolved = yield self.source.resolve_branch("feature")
        assert resolved == tip
        with pytest.raises(SourceError, match="cannot fetch branch 'nope'"):
            yield self.source.resolve_branch("nope")

    @defer.inlineCallbacks
    def test_an_unknown_revision_is_one_line(self):
        with pytest.raises(SourceError, match=r"^revision 0123abc is not in the repository "):
            yield self.source.pipeline_at("0123abcd" * 5)

    @defer.inlineCallbacks
    def test_a_bad_file_is_refused_and_remembered(self):
        bad = commit(self.repo, {".namaskah-ci.yml": "version: 1\njobs:\n  a:\n    stepz: [x]\n"}, "typo")
        for _ in range(2):
            with pytest.raises(PipelineError, match=r"^\.namaskah-ci\.yml:4: jobs\.a\.stepz: unknown key"):
                yield self.source.pipeline_at(bad)
        assert bad in self.source.cache

    @defer.inlineCallbacks
    def test_a_large_file_is_refused_before_it_is_read(self):
        big = commit(self.repo, {".namaskah-ci.yml": FILE_V1 + "#" * 4000 + "\n"}, "big")
        with pytest.raises(
            PipelineError, match=r"^\.namaskah-ci\.yml:1: \(file\): \d+ bytes is over the limit of 2048"
        ):
            yield self.source.pipeline_at(big)

    @defer.inlineCallbacks
    def test_a_bad_file_costs_one_parse_for_every_reader_and_reconfig(self):
        """Issue 21: 60 KB of nesting froze the master 47 s at every read. Now it fails at once in one
        line, and its result is kept per file content: another revision with the same file, a new
        reader after a reconfig and readers asking at the same time all get the one parse's result."""
        nested = FILE_V1 + "x: " + "[" * 30_000 + "]" * 30_000 + "\n"
        self.config = dataclasses.replace(self.config, policy=PipelinePolicy(max_bytes=64 * 1024))
        self.source = PipelineSource(self.config)
        bad = commit(self.repo, {".namaskah-ci.yml": nested}, "nesting")
        again = commit(self.repo, {"README": "y\n"}, "the same file, another revision")
        started = time.monotonic()
        with pytest.raises(PipelineError) as caught:
            yield self.source.pipeline_at(bad)
        assert time.monotonic() - started < 5  # 47 s and a RecursionError before
        assert caught.value.summary == ".namaskah-ci.yml:5: nesting deeper than 32 levels ([limits] file_depth)"
        state = self.source.state
        (key,) = [key for key in state.results if key[3] == self.config.policy and key[0] == "blob"]
        kept = state.results[key]
        after_reconfig = state.source(dataclasses.replace(self.config, default_label="changed"))
        readers = [after_reconfig.pipeline_at(again), self.source.pipeline_at(again), after_reconfig.pipeline_at(bad)]
        results = yield defer.DeferredList(readers, consumeErrors=True)
        assert [failure.value.summary for _, failure in results] == [caught.value.summary] * 3
        assert state.results[key] is kept and not state.parsing  # parsed once

    def test_one_state_per_master_keeps_one_reader_per_mirror(self):
        master = type("Master", (), {})()
        first = pipeline_source.source_for(master, self.config)
        assert pipeline_source.source_for(master, self.config) is first
        changed = pipeline_source.source_for(master, dataclasses.replace(self.config, default_label="changed"))
        assert changed is not first and changed.state is first.state and changed.lock is first.lock
        assert pipeline_source.source_for(type("Master", (), {})(), self.config).state is not first.state

    @defer.inlineCallbacks
    def test_readers_asking_at_once_share_one_parse(self):
        revision = commit(self.repo, {".namaskah-ci.yml": FILE_V2 + "# shared\n"}, "shared")
        first, second = yield defer.gatherResults(
            [self.source.pipeline_at(revision), PipelineSource(self.config, self.source.state).pipeline_at(revision)]
        )
        assert first is second and first.builders == ["lint", "docs"]

    @defer.inlineCallbacks
    def test_the_inputs_digest_takes_a_pattern_a_regex_backtracks_on_at_once(self):
        revision = commit(self.repo, {"a" * 50: "x\n", "a" * 20 + "b": "y\n"}, "a file named a x 50")
        started = time.monotonic()
        digest = yield self.source.inputs_digest(revision, ["*a" * 9 + "b"])  # a regex: ~25 s
        assert time.monotonic() - started < 5
        assert digest == (yield self.source.inputs_digest(revision, ["a" * 20 + "b"]))  # the one file it takes

    @defer.inlineCallbacks
    def test_a_symlink_is_not_followed(self):
        (self.repo / ".namaskah-ci.yml").unlink()
        os.symlink("/etc/passwd", self.repo / ".namaskah-ci.yml")
        git(self.repo, "add", "-A")
        git(self.repo, "commit", "-q", "-m", "link")
        link = git(self.repo, "rev-parse", "HEAD")
        with pytest.raises(PipelineError, match=r"must be a regular file, not a blob \(mode 120000\)"):
            yield self.source.pipeline_at(link)


# --- the job registry -------------------------------------------------------------------------------

V1 = load_pipeline(FILE_V1, ".namaskah-ci.yml")
V2 = load_pipeline(FILE_V2.replace("docs:\n", "docs:\n    schedule: '0 3 * * 1'\n"), ".namaskah-ci.yml")


def test_new_builders_are_added_and_kept():
    registry = Registry().merge(V2, default_branch=False)
    assert registry.builders == ["docs", "lint"] and entry_of(registry, "docs").schedule is None
    assert registry.merge(V1, default_branch=False) == registry  # a file without docs keeps its builder


def test_schedules_come_from_the_default_branch_only():
    on_main = Registry().merge(V2, default_branch=True)
    assert entry_of(on_main, "docs").schedule == "0 3 * * 1"
    assert entry_of(on_main.merge(V2, default_branch=False), "docs").schedule == "0 3 * * 1"
    dropped = on_main.merge(V1, default_branch=True)
    assert dropped.builders == ["docs", "lint"] and entry_of(dropped, "docs").schedule is None


def test_the_registry_survives_a_round_trip_and_refuses_garbage(tmp_path):
    path = tmp_path / "registry.json"
    assert read_registry(str(path)) == Registry()
    registry = Registry().merge(V2, default_branch=True)
    write_registry(str(path), registry)
    assert read_registry(str(path)) == registry and json.loads(path.read_text())["format"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["registry.json"]  # no temporary file left
    path.write_text('{"format": 7}')
    with pytest.raises(RegistryError, match="not a job registry of format 1"):
        read_registry(str(path))


# --- schedules ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "line, expected",
    [
        ("35 19 * * 6", {"minute": 35, "hour": 19, "dayOfWeek": 5}),  # Saturday: Buildbot counts from Monday = 0
        ("0 3 * * 0", {"minute": 0, "hour": 3, "dayOfWeek": 6}),
        ("0 3 * * 7", {"minute": 0, "hour": 3, "dayOfWeek": 6}),
        ("*/15 * * * 1-5", {"minute": [0, 15, 30, 45], "dayOfWeek": [0, 1, 2, 3, 4]}),
        ("0 0 1,15 * *", {"minute": 0, "hour": 0, "dayOfMonth": [1, 15]}),
    ],
)
def test_cron_lines_become_nightly_arguments(line, expected):
    assert parse_cron(line) == expected


@pytest.mark.parametrize(
    "line, message",
    [
        ("35 19 * *", "expected 5 cron fields"),
        ("35 24 * * *", "hour: '24' is outside 0-23"),
        ("x * * * *", "minute: 'x' is not a number"),
        ("*/0 * * * *", "minute: bad step '0'"),
    ],
)
def test_bad_cron_lines_name_the_field(line, message):
    with pytest.raises(CronError, match=message):
        parse_cron(line)
