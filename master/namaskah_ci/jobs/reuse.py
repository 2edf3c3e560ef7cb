"""Job results reused by their inputs: the key's runtime part, the record in the master's database.

The pipeline's fan-out (`steps/fanout.py`) computes each job's reuse key
(`job_inputs.reuse_key`: the job's definition, its inputs' content at the
revision, where it runs and, for a `history: full` job, the history it reads:
`history_facts`) and asks `ReuseStore` for an earlier SUCCESS with that
key. A job found there is still triggered, as its own build, with the earlier
build in `namaskah_reused`: that build runs on the master's `reuse` worker
(`placement.select_worker`: no container, no checkout), ends SUCCESS at once and links
there. Every other job build gets its key in `namaskah_reuse_key` and, when it
ends SUCCESS, records it (`steps/reuse.RecordReuse`).

Two builds of one key at once (a branch push and its pull request's merge
result with the same tree) run it once: the first to start registers the key
as running (`InFlight`); the other waits for it in its first step and shows its
result when it succeeded, or runs when it did not.

A `history: full` job (e.g. the secrets scan) reads every commit it fetches,
not only the tree: a secret added and removed in one push leaves the tree as it
was. Its key holds the revision (whose id fixes its ancestry) and every branch
and tag it fetches (`git ls-remote` of the repository when the pipeline fans
out), so a new revision always runs it, and the same revision reuses only while
no branch or tag moved. Reuse never shows a result a run could not have had.

Records live in Buildbot's object-state table (`state` in the master's
database, SQLite or PostgreSQL), so they survive restarts. A record whose build
is gone, or did not succeed, is never used. `[pipeline] reuse = false`, or a
forced pipeline with "run everything", runs every job.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import shutil
from collections.abc import Generator
from typing import Any

from twisted.internet import defer, threads, utils

from namaskah_ci import helpers, names
from namaskah_ci.jobs.hostenv import resolve_interpreter
from namaskah_ci.jobs.images import image_from
from namaskah_ci.per_master import per_master
from namaskah_ci.pipeline.specs import JobSpec
from namaskah_ci.text import short

STATE_OBJECT = ("namaskah-ci-reuse", "JobReuse")
VERSION_PROBE = "import os, sys; print(sys.version); print(os.path.realpath(sys.executable))"


@dataclasses.dataclass(frozen=True)
class ReuseSetup:
    """What decides where a job runs, for its key (comparable: built at each reconfig)."""

    enabled: bool = True
    mode: str = "local"
    interpreters: tuple[tuple[str, str], ...] = ()  # local: version -> interpreter
    worker_env: tuple[tuple[str, str], ...] = ()  # the operator's job environment (never secrets)
    base_path: str = ""
    job_user: str = ""
    docker_host: str = ""  # docker: the engine whose image ids count
    images: tuple[tuple[str, str], ...] = ()  # docker: [workers] images with the defaults


@functools.cache
def _helpers_digest() -> str:
    """The helpers' content (they come with the master: read once per process)."""
    digest = hashlib.sha256()
    for script in helpers.scripts():
        with open(os.path.join(helpers.HELPERS_DIR, script), "rb") as handle:
            digest.update(script.encode() + b"\0" + handle.read() + b"\0")
    return digest.hexdigest()


# (interpreter path, mtime) -> its sys.version and real path
_VERSIONS: dict[tuple[str, int] | None, dict[str, str]] = {}


@defer.inlineCallbacks
def _interpreter_facts(interpreters: dict[str, str], version: str, user: str) -> Generator[Any, Any, dict[str, str]]:
    path: str = yield threads.deferToThread(resolve_interpreter, interpreters, version, user)  # type: ignore[no-untyped-call]  # Twisted leaves it unannotated
    try:
        stamp = (path, os.stat(os.path.realpath(path)).st_mtime_ns) if os.path.isabs(path) else None
    except OSError:
        stamp = None
    if stamp in _VERSIONS:
        return _VERSIONS[stamp]
    out, _err, code = yield utils.getProcessOutputAndValue(path, ["-c", VERSION_PROBE], env=dict(os.environ))  # type: ignore[no-untyped-call]  # Twisted leaves it unannotated
    facts = {"interpreter": path, "version": out.decode("utf-8", "replace").strip() if code == 0 else "unusable"}
    if stamp is not None and code == 0:
        _VERSIONS[stamp] = facts
    return facts


def _image_ids(docker_host: str, wanted: list[str]) -> dict[str, str]:
    """{image: id or 'missing'} on the engine (blocking: call in a thread)."""
    import docker

    client = docker.APIClient(base_url=docker_host, timeout=10)
    try:
        ids: dict[str, str] = {}
        for image in wanted:
            try:
                ids[image] = client.inspect_image(image)["Id"]
            except docker.errors.NotFound:
                ids[image] = "missing"
        return ids
    finally:
        client.close()


@defer.inlineCallbacks
def runtime_facts(setup: ReuseSetup, job: JobSpec) -> Generator[Any, Any, dict[str, Any]]:
    """Where the job runs, as it enters its key (interpreter or images, environment, helpers)."""
    facts: dict[str, Any] = {
        "mode": setup.mode,
        "env": sorted(setup.worker_env),
        "path": setup.base_path,
        "user": setup.job_user,
        "helpers": (yield threads.deferToThread(_helpers_digest)),  # type: ignore[no-untyped-call]  # Twisted leaves it unannotated
    }
    if setup.mode == "docker":
        images = dict(setup.images)
        wanted = [image_from(images, job.builder, job.job, job.python, job.tools)]
        wanted += [images[service] for service in job.services if service in images]
        facts["images"] = yield threads.deferToThread(_image_ids, setup.docker_host, wanted)  # type: ignore[no-untyped-call]  # Twisted leaves it unannotated
    else:
        facts.update((yield _interpreter_facts(dict(setup.interpreters), job.python, setup.job_user)))
    return facts


class HistoryError(Exception):
    """The history a `history: full` job reads cannot be listed; the message is one line."""


@defer.inlineCallbacks
def history_facts(repo_url: str, revision: str) -> Generator[Any, Any, str]:
    """What a `history: full` job reads beyond its tree, as it enters its key: the revision and a
    digest of every branch and tag it fetches (job_commands.fetch_history_argv), listed now."""
    env = dict(os.environ, GIT_TERMINAL_PROMPT="0")
    out, _err, code = yield utils.getProcessOutputAndValue(  # type: ignore[no-untyped-call]  # Twisted leaves it unannotated
        shutil.which("git") or "git", ["ls-remote", "--heads", "--tags", repo_url], env=env
    )
    if code:  # git's message may hold the repository URL, which may hold a credential
        raise HistoryError(f"git ls-remote of the repository failed (exit code {code})")
    refs = sorted(line for line in out.decode("utf-8", "replace").splitlines() if line.strip())
    digest = hashlib.sha256("\n".join(refs).encode("utf-8")).hexdigest()
    return f"revision:{revision} refs:{len(refs)}:{digest}"


class ReuseStore:
    """The reuse records: key -> the SUCCESS build that had it."""

    def __init__(self, master: Any):
        self.master = master
        self._objectid: int | None = None

    @defer.inlineCallbacks
    def objectid(self) -> Generator[Any, Any, int]:
        if self._objectid is None:
            self._objectid = yield self.master.db.state.getObjectId(*STATE_OBJECT)
        return self._objectid

    @defer.inlineCallbacks
    def lookup(self, key: str) -> Generator[Any, Any, dict[str, Any] | None]:
        """The record of a SUCCESS build with this key that still exists, else None."""
        objectid = yield self.objectid()
        record = yield self.master.db.state.getState(objectid, key, None)
        if not isinstance(record, dict) or "buildid" not in record:
            return None
        build = yield self.master.data.get(("builds", record["buildid"]))
        if not build or build.get("results") != 0 or not build.get("complete"):
            return None
        return record

    @defer.inlineCallbacks
    def remember(self, key: str, record: dict[str, Any]) -> Generator[Any, Any, None]:
        objectid = yield self.objectid()
        yield self.master.db.state.setState(objectid, key, record)


class InFlight:
    """Reuse keys whose job is running now on this master: key -> (builder/number, waiters)."""

    def __init__(self) -> None:
        self.running: dict[str, tuple[str, list[defer.Deferred[None]]]] = {}

    def claim(self, key: str, who: str) -> str | None:
        """Register `who` as running `key`; returns who already runs it instead (then nothing changes)."""
        if key in self.running:
            return self.running[key][0]
        self.running[key] = (who, [])
        return None

    def wait(self, key: str) -> defer.Deferred[None]:
        """Fires when the build running `key` is done (at once when none is)."""
        entry = self.running.get(key)
        if entry is None:
            return defer.succeed(None)
        waiter: defer.Deferred[None] = defer.Deferred()
        entry[1].append(waiter)
        return waiter

    def release(self, key: str, who: str) -> None:
        entry = self.running.get(key)
        if entry is None or entry[0] != who:
            return
        del self.running[key]
        for waiter in entry[1]:
            if not waiter.called:
                waiter.callback(None)


def in_flight(master: Any) -> InFlight:
    """The master's registry (one per master)."""
    return per_master(master, "in_flight", lambda _: InFlight())


def is_reused(request: Any) -> bool:
    return bool(request.properties.getProperty(names.PROP_REUSED))


def summary(record: dict[str, Any]) -> str:
    revision = short(record.get("revision"))
    return f"reused from {record['builder']}/{record['number']} ({revision})"
