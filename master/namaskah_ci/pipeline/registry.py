"""The job builders this master knows: every builder a pipeline file of the repository defined.

Builders are the master's configuration, jobs are the repository's: a job that
first appears in a commit's `.namaskah-ci.yml` is recorded here by that
commit's `pipeline` build, which then reconfigures the master (as `buildbot
reconfig` does) so the job gets its builder, worker, force button, badge and
commit-status context without a restart. A builder stays recorded (its history
with it) whatever later files say, until the registry holds more than `[limits]
registered_builders`: then the builders unused longest (by the last pipeline
that defined them; those holding a schedule last) are retired, never one the
current pipeline needs. Schedules are taken from the default branch's file only.

The registry is a JSON file in the master's basedir, written atomically
(temporary file, fsync, rename), so a crash leaves the old or the new one.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from collections.abc import Iterable
from typing import Any

from namaskah_ci.pipeline.specs import JobSpec, Pipeline

FILE_NAME = "pipeline-builders.json"
FORMAT = 1
USE_RESOLUTION = 60  # seconds: a builder's last use is rewritten at most once a minute


@dataclasses.dataclass(frozen=True)
class BuilderEntry:
    """What the configuration needs of a job builder (its latest definition)."""

    builder: str
    job: str
    python: str
    context: str
    timeout_minutes: int
    services: tuple[str, ...] = ()
    tools: tuple[str, ...] = ()
    verdict: bool = True
    priority: str = "normal"
    schedule: str | None = None  # from the default branch's file only
    # when a pipeline last defined it (Unix time); not part of the configuration
    last_used: int = dataclasses.field(default=0, compare=False)

    @classmethod
    def of(cls, job: JobSpec, schedule: str | None, used_at: int = 0) -> BuilderEntry:
        return cls(
            builder=job.builder,
            job=job.job,
            python=job.python,
            context=job.context,
            timeout_minutes=job.timeout_minutes,
            services=tuple(job.services),
            tools=tuple(job.tools),
            verdict=job.verdict,
            priority=job.priority,
            schedule=schedule,
            last_used=used_at,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BuilderEntry:
        values = dict(data)
        for key in ("services", "tools"):
            values[key] = tuple(values.get(key, ()))
        known = {field.name for field in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in known})


@dataclasses.dataclass(frozen=True)
class Registry:
    entries: tuple[BuilderEntry, ...] = ()

    @property
    def builders(self) -> list[str]:
        return [entry.builder for entry in self.entries]

    def entry(self, builder: str) -> BuilderEntry | None:
        return next((entry for entry in self.entries if entry.builder == builder), None)

    def merge(self, pipeline: Pipeline, default_branch: bool, used_at: int = 0) -> Registry:
        """This registry updated with a pipeline: new builders added; on the default branch, every
        builder's definition (and schedule) refreshed and schedules of jobs it no longer has dropped.
        The pipeline's builders count as used at `used_at` (rewritten at most once a minute)."""
        by_name = {entry.builder: entry for entry in self.entries}
        for job in pipeline.jobs:
            known = by_name.get(job.builder)
            last = known.last_used if known and used_at - known.last_used < USE_RESOLUTION else used_at
            if known is None or default_branch:
                by_name[job.builder] = BuilderEntry.of(job, job.schedule if default_branch else None, last)
            elif last != known.last_used:
                by_name[job.builder] = dataclasses.replace(known, last_used=last)
        if default_branch:
            defined = set(pipeline.builders)
            for name, entry in by_name.items():
                if name not in defined and entry.schedule:
                    by_name[name] = dataclasses.replace(entry, schedule=None)
        return Registry(tuple(sorted(by_name.values(), key=lambda entry: entry.builder)))

    def retire(self, limit: int, keep: Iterable[str] = ()) -> Registry:
        """This registry with at most `limit` builders: the longest unused are retired first (those
        holding a schedule after every other), never one of `keep` (it may stay over the limit for them)."""
        extra = len(self.entries) - limit
        if extra <= 0:
            return self
        kept = set(keep)
        candidates = [entry for entry in self.entries if entry.builder not in kept]
        candidates.sort(key=lambda entry: (entry.schedule is not None, entry.last_used, entry.builder))
        retired = {entry.builder for entry in candidates[:extra]}
        return Registry(tuple(entry for entry in self.entries if entry.builder not in retired))

    def to_json(self) -> str:
        entries = [dataclasses.asdict(entry) for entry in self.entries]
        return json.dumps({"format": FORMAT, "builders": entries}, indent=1, sort_keys=True) + "\n"


def read_registry(path: str) -> Registry:
    """The registry at `path`; empty when there is none yet."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        return Registry()
    except (OSError, ValueError) as exc:
        raise RegistryError(f"{path}: unreadable job registry ({exc}); move it away to start a new one") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise RegistryError(f"{path}: not a job registry of format {FORMAT}")
    try:
        entries = tuple(BuilderEntry.from_dict(item) for item in data.get("builders", []))
    except (TypeError, KeyError) as exc:
        raise RegistryError(f"{path}: bad entry in the job registry ({exc})") from None
    return Registry(entries)


def write_registry(path: str, registry: Registry) -> None:
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".pipeline-builders-", dir=directory)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(registry.to_json())
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


class RegistryError(Exception):
    """The registry file cannot be used; the message names it."""
