"""A job's inputs and its reuse key (pure: no Buildbot, no I/O).

A job may list `inputs:`, path patterns of the files it reads; without them it
reads the whole tree. Two runs of a job whose reuse key is equal do the same
work, so the later can show the earlier's SUCCESS (`reuse.py`). The key is a
SHA-256 over:

- the resolved job definition: steps, env, services, requirements, Python,
  tools, history, reports, inputs and the names (never the values) of its
  secrets; not what only shows or schedules it (context, timeout, branches,
  verdict, schedule, priority);
- the content of its inputs at the revision: the tree's id when the job has no
  `inputs:`, else every matching file's path, mode and blob id;
- where it runs (`runtime`): the interpreter's path and version (local) or the
  image ids (docker), the operator's job environment, the helpers' content.

Patterns follow .gitignore: `*` and `?` stay within one directory, `**`
crosses directories, a pattern without a `/` (other than a trailing one)
matches a name at any depth, a leading `/` anchors it at the root, a pattern
that names a directory takes everything under it, and `!pattern` takes back
what an earlier pattern matched (the last matching pattern wins).
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Iterable, Optional

# JobSpec fields that do not change what a job does (they show it, time it out or pick when it runs)
NOT_IN_KEY = ("context", "timeout_minutes", "branches", "verdict", "schedule", "priority")
WHOLE_TREE = "tree"


class PatternError(ValueError):
    """An input pattern that cannot be used; the message says why."""


def pattern_problem(pattern: str) -> Optional[str]:
    """Why `pattern` is not a usable input pattern (None when it is)."""
    body = pattern[1:] if pattern.startswith("!") else pattern
    if not body.strip("/").strip():
        return f"{pattern!r} names no path"
    if ".." in body.split("/"):
        return f"{pattern!r} must stay inside the repository (no '..')"
    if body.count("[") != body.count("]"):
        return f"{pattern!r} has an unclosed '['"
    return None


def _translate(body: str) -> str:
    out, index = [], 0
    while index < len(body):
        char = body[index]
        if body.startswith("**/", index):
            out.append("(?:.*/)?")
            index += 3
            continue
        if body.startswith("**", index):
            out.append(".*")
            index += 2
            continue
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[":
            end = body.index("]", index)
            inner = body[index + 1 : end]
            negate = inner.startswith("!")
            inner = re.escape(inner[1:] if negate else inner).replace("\\-", "-")
            out.append(f"[{'^' if negate else ''}{inner}]")
            index = end + 1
            continue
        else:
            out.append(re.escape(char))
        index += 1
    return "".join(out)


def compile_pattern(pattern: str) -> tuple[bool, re.Pattern]:
    """(include?, regex over a repository path)."""
    problem = pattern_problem(pattern)
    if problem:
        raise PatternError(problem)
    include = not pattern.startswith("!")
    body = pattern if include else pattern[1:]
    anchored = body.startswith("/") or "/" in body.rstrip("/")
    body = body.strip("/")
    prefix = "" if anchored else "(?:.*/)?"
    return include, re.compile(f"^{prefix}{_translate(body)}(?:/.*)?$", re.DOTALL)


class InputMatcher:
    """Which repository paths a job's `inputs:` take (see the module docstring)."""

    def __init__(self, patterns: Iterable[str]):
        self.patterns = tuple(patterns)
        self.compiled = [compile_pattern(pattern) for pattern in self.patterns]

    def __call__(self, path: str) -> bool:
        taken = False
        for include, regex in self.compiled:
            if regex.match(path):
                taken = include
        return taken


def parse_ls_tree(output: bytes) -> list[tuple[str, str, str, str]]:
    """(mode, type, object id, path) of each entry of `git ls-tree -r -z` output."""
    entries = []
    for record in output.split(b"\0"):
        if not record:
            continue
        meta, _, path = record.partition(b"\t")
        mode, kind, object_id = meta.decode("ascii").split(" ")
        entries.append((mode, kind, object_id, path.decode("utf-8", "surrogateescape")))
    return entries


def inputs_digest(entries: Iterable[tuple[str, str, str, str]], patterns: Iterable[str]) -> tuple[str, int]:
    """(digest, files taken) of the tree entries the patterns take."""
    matcher = InputMatcher(patterns)
    digest = hashlib.sha256()
    taken = 0
    for mode, _kind, object_id, path in sorted(entries, key=lambda entry: entry[3]):
        if matcher(path):
            digest.update(f"{mode} {object_id} {path}\0".encode("utf-8", "surrogateescape"))
            taken += 1
    return f"files:{digest.hexdigest()}", taken


def key_document(job: dict, inputs: str, runtime: dict, history: str = "") -> dict:
    """What the reuse key is the hash of (a job's `JobSpec.to_dict()`).

    A `history: full` job reads more than its tree: every commit it fetches (a secret added and
    removed again leaves the tree as it was). `history` says what that is (`reuse.history_facts`:
    the revision, whose id fixes its ancestry, and every branch and tag the job fetches), and such
    a job has no key without it."""
    definition = {name: value for name, value in job.items() if name not in NOT_IN_KEY}
    # key_version 2: a `history: full` job's key holds its history (records of version 1 never match)
    document = {"key_version": 2, "job": definition, "inputs": inputs, "runtime": runtime}
    if job.get("history") == "full":
        if not history:
            raise ValueError(f"{job.get('builder', 'the job')} reads the whole history: its key needs it")
        document["history"] = history
    return document


def reuse_key(job: dict, inputs: str, runtime: dict, history: str = "") -> str:
    text = json.dumps(key_document(job, inputs, runtime, history), sort_keys=True, separators=(",", ":"), default=list)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
