"""Reading a revision's pipeline file on the master, without a worker and without blocking.

`PipelineSource.pipeline_at(revision)` reads `.namaskah-ci.yml` with `git
ls-tree` / `git cat-file` from the git poller's bare repository (which already
holds every commit it reported) or, for a revision it never fetched, from a
bare mirror the master keeps beside it (fetched on a miss; one fetch at a
time). A revision without the file gets the default pipeline (`[pipeline]
default_file`). Every git call is a child process the reactor waits on
(`getProcessOutputAndValue`); nothing from the file is ever executed here.

A file is parsed and validated in a thread (`load_pipeline`, bounded by
`[limits]`), never on the reactor, and so is the digest of a job's inputs. The
result, a pipeline or a bad file's one line, is kept per file content (its git
blob id and the master's policy), for the process's life, shared by every
reader (the `pipeline` build's LoadPipeline, each job build's LoadJob, any
revision holding the same file) and across reconfigurations; readers asking
while it is parsed wait for that one parse. So a bad file costs its parse once,
however often it is read. What the readers share (the results, the parses
under way, one reader and one git lock per mirror) is one `SourceState` per
master (`per_master`), which outlives reconfigurations.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import os
import re
import shutil
from collections.abc import Generator, Iterable
from typing import Any

from twisted.internet import defer, threads, utils
from twisted.python import log
from twisted.python.failure import Failure

from namaskah_ci.per_master import per_master
from namaskah_ci.pipeline.inputs import WHOLE_TREE, inputs_digest, parse_ls_tree
from namaskah_ci.pipeline.model import FILE_NAME, PipelineError, PipelinePolicy, load_pipeline
from namaskah_ci.pipeline.specs import Pipeline
from namaskah_ci.text import short

CACHE_SIZE = 128
DEFAULT_REGISTERED = 256  # [limits] registered_builders
# a file's content key: ("blob", blob id, label, policy) or ("default", sha256, label, policy)
FileKey = tuple[str, str, str, PipelinePolicy]
Parsed = Pipeline | PipelineError  # what a file gives: its pipeline, or why it is unusable


class SourceError(Exception):
    """The revision or branch cannot be read; the message is one line."""


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """What the master's pipeline steps need to find a revision's jobs (comparable, for reconfigs)."""

    repo_url: str
    poller_dir: str
    mirror_dir: str
    default_file: str
    default_label: str
    registry_path: str
    default_branch: str
    policy: PipelinePolicy = dataclasses.field(default_factory=PipelinePolicy)
    max_registered: int = DEFAULT_REGISTERED  # job builders the registry keeps ([limits] registered_builders)


REVISION = re.compile(r"^[0-9a-fA-F]{7,40}$")
BRANCH = re.compile(r"^(?!-)(?!.*\.\.)[A-Za-z0-9._/+-]{1,200}$")  # also never a git option


class PipelineSource:
    """One per mirror directory (`source_for`), so its lock and cache outlive reconfigs."""

    def __init__(self, config: PipelineConfig, state: SourceState | None = None):
        self.config = config
        self.state = SourceState() if state is None else state
        self.lock = self.state.lock_for(config.mirror_dir)  # one git at a time per mirror
        self.cache: collections.OrderedDict[str, Parsed] = collections.OrderedDict()
        # (revision, patterns) -> inputs digest (a revision's files never change)
        self.digests: dict[tuple[str, tuple[str, ...] | None], str] = {}

    @defer.inlineCallbacks
    def git(self, git_dir: str, *args: str) -> Generator[Any, Any, tuple[bytes, str, int]]:
        env = dict(os.environ, GIT_TERMINAL_PROMPT="0")
        out, err, code = yield utils.getProcessOutputAndValue(  # type: ignore[no-untyped-call]  # Twisted leaves it unannotated
            shutil.which("git") or "git", ["--git-dir", git_dir, *args], env=env
        )
        return out, err.decode("utf-8", "replace").strip(), code

    @defer.inlineCallbacks
    def _ensure_mirror(self) -> Generator[Any, Any, None]:
        if not os.path.isdir(os.path.join(self.config.mirror_dir, "objects")):
            yield threads.deferToThread(os.makedirs, self.config.mirror_dir, exist_ok=True)  # type: ignore[no-untyped-call]  # Twisted leaves it unannotated
            _, err, code = yield self.git(self.config.mirror_dir, "init", "--quiet", "--bare")
            if code:
                raise SourceError(f"cannot create the pipeline mirror {self.config.mirror_dir}: {err}")

    @defer.inlineCallbacks
    def fetch(self, *refspecs: str) -> Generator[Any, Any, tuple[int, str]]:
        """Fetch into the mirror (serialised: one fetch at a time)."""
        yield self.lock.acquire()
        try:
            yield self._ensure_mirror()
            specs = refspecs or ("+refs/heads/*:refs/heads/*",)
            _, err, code = yield self.git(
                self.config.mirror_dir, "fetch", "--quiet", "--no-tags", self.config.repo_url, *specs
            )
            return code, err
        finally:
            self.lock.release()

    @defer.inlineCallbacks
    def resolve_branch(self, branch: str) -> Generator[Any, Any, str]:
        """The newest revision of a branch in the repository (fetched now)."""
        if not isinstance(branch, str) or not BRANCH.match(branch):
            raise SourceError(f"{str(branch)[:60]!r} is not a branch name")
        code, err = yield self.fetch(f"+refs/heads/{branch}:refs/heads/{branch}")
        if code:
            raise SourceError(
                f"cannot fetch branch {branch!r} from the repository: {err.splitlines()[-1] if err else code}"
            )
        out: bytes
        out, err, code = yield self.git(
            self.config.mirror_dir, "rev-parse", "--verify", f"refs/heads/{branch}^{{commit}}"
        )
        if code:
            raise SourceError(f"branch {branch!r} not found in the repository")
        return out.decode().strip()

    @defer.inlineCallbacks
    def _entry(self, git_dir: str, revision: str) -> Generator[Any, Any, tuple[bool, list[str] | None]]:
        """(known, entry): whether git_dir has the revision, and its file's ls-tree entry."""
        if not os.path.isdir(git_dir):
            return False, None
        out, _, code = yield self.git(git_dir, "ls-tree", "-l", f"{revision}^{{commit}}", "--", FILE_NAME)
        if code:
            return False, None
        line = out.decode("utf-8", "replace").strip()
        return True, (line.split(None, 4) if line else None)

    @defer.inlineCallbacks
    def read(self, revision: str) -> Generator[Any, Any, tuple[str, list[str] | None]]:
        """(git dir, ls-tree entry or None when the revision has no pipeline file)."""
        if not isinstance(revision, str) or not REVISION.match(revision):
            raise SourceError(f"{str(revision)[:60]!r} is not a revision (7 to 40 hexadecimal characters)")
        for git_dir in (self.config.poller_dir, self.config.mirror_dir):
            known, entry = yield self._entry(git_dir, revision)
            if known:
                return git_dir, entry
        for refspecs in ((), (revision,)):  # every branch first; then the revision itself (a PR ref)
            yield self.fetch(*refspecs)
            known, entry = yield self._entry(self.config.mirror_dir, revision)
            if known:
                return self.config.mirror_dir, entry
        raise SourceError(f"revision {short(revision)} is not in the repository {self.config.repo_url}")

    @defer.inlineCallbacks
    def default_pipeline(self) -> Generator[Any, Any, Pipeline]:
        def read_default() -> bytes:
            with open(self.config.default_file, "rb") as handle:
                return handle.read()

        try:
            text = yield threads.deferToThread(read_default)  # type: ignore[no-untyped-call]  # Twisted leaves it unannotated
        except OSError as exc:
            raise SourceError(
                f"the default pipeline {self.config.default_file} cannot be read: {exc.strerror}"
            ) from exc
        key = ("default", hashlib.sha256(text).hexdigest(), self.config.default_label, self.config.policy)
        pipeline: Pipeline = yield self.state.parsed(key, text, self.config.default_label, self.config.policy)
        return pipeline

    @defer.inlineCallbacks
    def pipeline_at(self, revision: str) -> Generator[Any, Any, Pipeline]:
        """The revision's pipeline model; raises PipelineError (bad file) or SourceError."""
        if revision in self.cache:
            self.cache.move_to_end(revision)
            cached = self.cache[revision]
            if isinstance(cached, PipelineError):
                raise PipelineError(cached.summary, cached.problems)
            return cached
        git_dir, entry = yield self.read(revision)
        pipeline: Pipeline
        try:
            pipeline = yield self._load(git_dir, revision, entry)
        except PipelineError as exc:
            self._remember(revision, exc)
            raise
        self._remember(revision, pipeline)
        return pipeline

    @defer.inlineCallbacks
    def _load(self, git_dir: str, revision: str, entry: list[str] | None) -> Generator[Any, Any, Pipeline]:
        pipeline: Pipeline
        if entry is None:
            pipeline = yield self.default_pipeline()
            return pipeline
        mode, kind, blob, size = entry[0], entry[1], entry[2], entry[3]
        if kind != "blob" or mode not in ("100644", "100755"):
            raise PipelineError(f"{FILE_NAME}:1: (file): must be a regular file, not a {kind} (mode {mode})", [])
        if size.isdigit() and int(size) > self.config.policy.max_bytes:
            limit = self.config.policy.max_bytes
            raise PipelineError(
                f"{FILE_NAME}:1: (file): {size} bytes is over the limit of {limit} ([pipeline] max_file_bytes)", []
            )
        key = ("blob", blob, FILE_NAME, self.config.policy)
        text = b""
        if not self.state.known(key):
            text, err, code = yield self.git(git_dir, "cat-file", "blob", blob)
            if code:
                raise SourceError(f"cannot read {FILE_NAME} at {short(revision)}: {err}")
        pipeline = yield self.state.parsed(key, text, FILE_NAME, self.config.policy)
        return pipeline

    @defer.inlineCallbacks
    def inputs_digest(self, revision: str, patterns: Iterable[str] | None) -> Generator[Any, Any, str]:
        """The content digest of a job's inputs at the revision (pipeline/inputs.py): the tree's id for
        the whole tree (`patterns` None), else the matching files' paths, modes and blobs."""
        key = (revision, tuple(patterns) if patterns is not None else None)
        if key in self.digests:
            return self.digests[key]
        git_dir, _ = yield self.read(revision)
        if patterns is None:
            out, err, code = yield self.git(git_dir, "rev-parse", "--verify", f"{revision}^{{tree}}")
            digest = f"{WHOLE_TREE}:{out.decode().strip()}"
        else:
            out, err, code = yield self.git(git_dir, "ls-tree", "-r", "-z", "--full-tree", f"{revision}^{{commit}}")
            digest = "" if code else (yield threads.deferToThread(_digest, out, tuple(patterns)))  # type: ignore[no-untyped-call]  # Twisted leaves it unannotated
        if code:
            raise SourceError(f"cannot list the files of {short(revision)}: {err}")
        self.digests[key] = digest
        while len(self.digests) > CACHE_SIZE:
            self.digests.pop(next(iter(self.digests)))
        return digest

    def _remember(self, revision: str, value: Parsed) -> None:
        self.cache[revision] = value
        while len(self.cache) > CACHE_SIZE:
            self.cache.popitem(last=False)


def _digest(ls_tree: bytes, patterns: tuple[str, ...]) -> str:
    return inputs_digest(parse_ls_tree(ls_tree), patterns)[0]


def _parse_file(text: bytes, label: str, policy: PipelinePolicy) -> Parsed:
    """In a thread: the pipeline, or the PipelineError returned (kept like a pipeline)."""
    try:
        return load_pipeline(text, label, policy)
    except PipelineError as exc:
        return exc


def _raise_error(value: Parsed) -> Pipeline:
    if isinstance(value, PipelineError):
        raise PipelineError(value.summary, value.problems)  # a copy: the kept one gathers no traceback
    return value


class SourceState:
    """What every pipeline reader of one master shares, across reconfigurations: one reader and one
    git lock per mirror, and each file's result (Pipeline or PipelineError) by content key."""

    def __init__(self, _master: object = None):
        self.sources: dict[str, PipelineSource] = {}
        self.locks: dict[str, defer.DeferredLock] = {}
        self.results: collections.OrderedDict[FileKey, Parsed] = collections.OrderedDict()
        # key -> the Deferreds of readers waiting for the parse under way
        self.parsing: dict[FileKey, list[defer.Deferred[Parsed]]] = {}

    def lock_for(self, mirror_dir: str) -> defer.DeferredLock:
        return self.locks.setdefault(mirror_dir, defer.DeferredLock())

    def source(self, config: PipelineConfig) -> PipelineSource:
        """The reader for this mirror; a new config (reconfig) gets a new reader (the results stay)."""
        source = self.sources.get(config.mirror_dir)
        if source is None or source.config != config:
            source = self.sources[config.mirror_dir] = PipelineSource(config, self)
        return source

    def known(self, key: FileKey) -> bool:
        """Whether the file of `key` is parsed or being parsed (its text is not needed again)."""
        return key in self.results or key in self.parsing

    def parsed(self, key: FileKey, text: bytes, label: str, policy: PipelinePolicy) -> defer.Deferred[Pipeline]:
        """A Deferred of the pipeline of `text` (or PipelineError), parsed in a thread once per `key`."""
        result: defer.Deferred[Parsed]
        if key in self.results:
            self.results.move_to_end(key)
            result = defer.succeed(self.results[key])
        elif key in self.parsing:
            result = defer.Deferred()
            self.parsing[key].append(result)
        else:
            self.parsing[key] = []
            result = threads.deferToThread(_parse_file, text, label, policy).addBoth(self._settle, key, label)  # type: ignore[no-untyped-call]  # Twisted leaves it unannotated
        return result.addCallback(_raise_error)

    def _settle(self, value: Parsed | Failure, key: FileKey, label: str) -> Parsed:
        """The parse of `key` ended: keep its result and hand it to every reader waiting for it."""
        if isinstance(value, Failure):  # a bug, not the file's fault: one line for the build, the traceback logged
            log.err(value, f"pipeline: reading {label} failed")  # type: ignore[no-untyped-call]  # Twisted leaves it unannotated
            kind = value.type.__name__ if value.type is not None else "error"
            summary = f"{label}: could not be read ({kind}; see the master's twistd.log)"
            value = PipelineError(summary, [summary])
        self.results[key] = value
        while len(self.results) > CACHE_SIZE:
            self.results.popitem(last=False)
        for waiting in self.parsing.pop(key):
            waiting.callback(value)
        return value


def source_for(master: object, config: PipelineConfig) -> PipelineSource:
    """The master's reader for this mirror (kept across reconfigurations)."""
    return per_master(master, "pipeline_sources", SourceState).source(config)


def describe(pipeline: Pipeline, revision: str) -> str:
    """Where a pipeline's jobs came from, for summaries and the `pipeline_file` property."""
    if pipeline.source == FILE_NAME:
        return f"{FILE_NAME} at {short(revision)}"
    return f"the default pipeline {pipeline.source} (no {FILE_NAME} at {short(revision)})"
