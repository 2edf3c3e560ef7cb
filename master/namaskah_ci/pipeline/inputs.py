"""A job's inputs and its reuse key (pure: no Buildbot, no I/O).

A job may list `inputs:`, path patterns of the files it reads; without them it
reads the whole tree. Two runs of a job whose reuse key is equal do the same
work, so the later can show the earlier's SUCCESS (`jobs/reuse.py`). The key is a
SHA-256 over:

- the resolved job definition: steps, env, services, requirements, Python,
  tools, history, reports, inputs and the names (never the values) of its
  secrets; not what only shows or schedules it (context, timeout, branches,
  verdict, schedule, priority);
- the content of its inputs at the revision: the tree's id when the job has no
  `inputs:`, else every matching file's path, mode and blob id, the files its
  environment is made from always among them (`key_patterns`: its requirement
  files; its `install:`'s uv.lock / poetry.lock and pyproject.toml, or its local
  pip specs' pyproject.toml, setup.py, setup.cfg, in its working directory);
- for a `history: full` job, its history as well: the revision (whose id fixes
  every commit it reaches) and every branch and tag the job fetches
  (`jobs/reuse.py` `history_facts`), so a new commit, even one that leaves the
  tree as it was (a secret added and removed in one push), is never reused;
- where it runs (`runtime`): the interpreter's path and version (local) or the
  image ids (docker), the operator's job environment, the helpers' content.

Patterns follow .gitignore: `*` and `?` stay within one directory, `**`
crosses directories, a pattern without a `/` (other than a trailing one)
matches a name at any depth, a leading `/` anchors it at the root, a pattern
that names a directory takes everything under it, and `!pattern` takes back
what an earlier pattern matched (the last matching pattern wins). A `[...]` class
takes one character other than '/' (`[!...]`: any other one).

Matching takes time linear in the path for each pattern (at worst the path's
length times the pattern's, whatever the pattern): a pattern is an automaton
simulated without backtracking, never a backtracking regex, and the digest of a
revision's files is made in a thread (`pipeline/source.py`).
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from collections.abc import Iterable
from typing import Any

# JobSpec fields that do not change what a job does (they show it, time it out or pick when it runs)
NOT_IN_KEY = ("context", "timeout_minutes", "branches", "verdict", "schedule", "priority")
WHOLE_TREE = "tree"


class PatternError(ValueError):
    """An input pattern that cannot be used; the message says why."""


# A pattern is compiled to tokens, the states of a small automaton that is simulated the way RE2 does
# (Thompson's construction): the set of states the path read so far can reach is carried one
# character at a time, never backtracking. The sets met are numbered as they appear and their moves
# remembered (a lazily built DFA), so a path usually costs one dict look-up per character.
LITERAL, ONE, CLASS, STAR, ANY, DIRS = range(6)
# ONE `?` and CLASS `[...]`: one character other than '/'; STAR `*`: any run within one directory;
# ANY `**`: any run; DIRS `**/` (and an unanchored pattern's start): nothing, or any run ending in '/'
_SKIPPABLE = (STAR, ANY, DIRS)
MAX_STATES = 1024  # numbered state sets kept per pattern; past it the table is started again
# (kind, value): a LITERAL's character, a CLASS's (ranges, negate), None for the others
Token = tuple[int, Any]


def _class(body: str, index: int) -> tuple[Token, int]:
    """The token of the `[...]` opening at `index`, and the index after it."""
    end = body.find("]", index + 1)
    if end < 0:
        raise PatternError(f"{body!r} has an unclosed '['")
    inner = body[index + 1 : end]
    negate = inner.startswith("!")
    inner = inner[1:] if negate else inner
    ranges, at = [], 0
    while at < len(inner):
        if at + 2 < len(inner) and inner[at + 1] == "-":
            ranges.append((inner[at], inner[at + 2]))
            at += 3
        else:
            ranges.append((inner[at], inner[at]))
            at += 1
    return (CLASS, (tuple(ranges), negate)), end + 1


def _tokens(body: str) -> list[Token]:
    tokens: list[Token] = []
    index = 0
    while index < len(body):
        if body.startswith("**/", index):
            tokens.append((DIRS, None))
            index += 3
        elif body.startswith("**", index):
            tokens.append((ANY, None))
            index += 2
        elif body[index] in "*?":
            tokens.append((STAR if body[index] == "*" else ONE, None))
            index += 1
        elif body[index] == "[":
            token, index = _class(body, index)
            tokens.append(token)
        else:
            tokens.append((LITERAL, body[index]))
            index += 1
    return tokens


def _in_class(value: tuple[tuple[tuple[str, str], ...], bool], char: str) -> bool:
    ranges, negate = value
    return any(low <= char <= high for low, high in ranges) != negate


def pattern_problem(pattern: str) -> str | None:
    """Why `pattern` is not a usable input pattern (None when it is)."""
    body = pattern[1:] if pattern.startswith("!") else pattern
    if not body.strip("/").strip():
        return f"{pattern!r} names no path"
    if ".." in body.split("/"):
        return f"{pattern!r} must stay inside the repository (no '..')"
    try:
        if body.count("[") != body.count("]"):
            raise PatternError(body)
        _tokens(body)
    except PatternError:
        return f"{pattern!r} has an unclosed '['"
    return None


class Glob:
    """One pattern's automaton (see above): `match(path)` in O(len(path) x len(pattern)) at worst."""

    def __init__(self, tokens: list[Token]):
        self.tokens = tuple(tokens)
        self.end = len(self.tokens)  # the whole pattern read: the path may end here or go on below
        self.below = self.end + 1  # the end and a '/' read: everything under it is taken
        self.inside = self.end + 2  # inside + i: within the DIRS token i, past its start
        plain = "".join(value if kind == LITERAL else "\0" for kind, value in self.tokens)
        self.literals = tuple(run for run in plain.split("\0") if run)  # every taken path contains them
        self._reset()

    def _reset(self) -> None:
        self.sets: list[frozenset[int]] = []
        self.numbers: dict[frozenset[int], int] = {}
        self.moves: list[dict[str, int]] = []
        self.start = self._number(self._closure((0,)))

    def _closure(self, states: Iterable[int]) -> frozenset[int]:
        out: set[int] = set()
        todo = list(states)
        while todo:
            state = todo.pop()
            if state not in out:
                out.add(state)
                if state < self.end and self.tokens[state][0] in _SKIPPABLE:  # may match nothing
                    todo.append(state + 1)
        return frozenset(out)

    def _number(self, states: frozenset[int]) -> int:
        number = self.numbers.get(states)
        if number is None:
            number = self.numbers[states] = len(self.sets)
            self.sets.append(states)
            self.moves.append({})
        return number

    def _step(self, states: frozenset[int], char: str) -> frozenset[int]:
        after = []
        for state in states:
            if state >= self.inside:  # within a DIRS run: it ends only after a '/'
                after.append(state)
                if char == "/":
                    after.append(state - self.inside + 1)
                continue
            if state >= self.end:
                if state == self.below or char == "/":
                    after.append(self.below)
                continue
            kind, value = self.tokens[state]
            if kind == LITERAL:
                if char == value:
                    after.append(state + 1)
            elif kind in (ONE, CLASS):
                if char != "/" and (kind == ONE or _in_class(value, char)):
                    after.append(state + 1)
            elif kind != DIRS:  # STAR, ANY
                if kind == ANY or char != "/":
                    after.append(state)
            else:
                after.append(self.inside + state)
                if char == "/":
                    after.append(state + 1)
        return self._closure(after)

    def _move(self, number: int, char: str) -> int:
        following = self._step(self.sets[number], char)
        if len(self.sets) >= MAX_STATES:
            self._reset()
            return self._number(following)
        self.moves[number][char] = self._number(following)
        return self.moves[number][char]

    def match(self, path: str) -> bool:
        if not all(run in path for run in self.literals):
            return False
        number = self.start
        for char in path:
            following = self.moves[number].get(char)
            number = self._move(number, char) if following is None else following
            states = self.sets[number]
            if not states:
                return False
            if self.below in states:
                return True
        return self.end in self.sets[number]


def compile_pattern(pattern: str) -> tuple[bool, Glob]:
    """(include?, the pattern's automaton over a repository path)."""
    problem = pattern_problem(pattern)
    if problem:
        raise PatternError(problem)
    include = not pattern.startswith("!")
    body = pattern if include else pattern[1:]
    anchored = body.startswith("/") or "/" in body.rstrip("/")
    tokens = _tokens(body.strip("/"))
    return include, Glob(tokens if anchored else [(DIRS, None), *tokens])


class InputMatcher:
    """Which repository paths a job's `inputs:` take (see the module docstring)."""

    def __init__(self, patterns: Iterable[str]):
        self.patterns = tuple(patterns)
        self.compiled = [compile_pattern(pattern) for pattern in self.patterns]

    def __call__(self, path: str) -> bool:
        taken = False
        for include, glob in self.compiled:
            if include != taken and glob.match(path):  # a pattern that cannot change the answer is skipped
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


# the files an `install:` reads (helpers/ci_install.py keys the venv by the same), per tool
ENVIRONMENT_FILES = {
    "uv": ("uv.lock", "pyproject.toml"),
    "poetry": ("poetry.lock", "pyproject.toml"),
    "pip": ("pyproject.toml", "setup.py", "setup.cfg"),
}


def key_patterns(job: dict[str, Any]) -> list[str] | None:
    """The patterns of a job's inputs (a `JobSpec.to_dict()`) as its key reads them: its `inputs:` and,
    after them (so no `!pattern` takes them back), the files its environment is made from, anchored;
    None (the whole tree) without `inputs:`."""
    patterns = job.get("inputs")
    if patterns is None:
        return None
    files = list(job.get("requirements") or ())
    install = job.get("install") or {}
    if install.get("tool") in ENVIRONMENT_FILES:
        base = job.get("working_directory") or ""
        directories = [base]
        if install["tool"] == "pip":
            local = [spec.split("[", 1)[0] for spec in install.get("specs", ()) if spec.startswith(".")]
            directories = [posixpath.normpath(posixpath.join(base, spec)) for spec in local]
        files += [posixpath.join(where, name) for where in directories for name in ENVIRONMENT_FILES[install["tool"]]]
    extra = ["/" + posixpath.normpath(path) for path in files]
    return [*patterns, *(pattern for pattern in extra if pattern_problem(pattern) is None)]


def key_document(job: dict[str, Any], inputs: str, runtime: dict[str, Any], history: str = "") -> dict[str, Any]:
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


def reuse_key(job: dict[str, Any], inputs: str, runtime: dict[str, Any], history: str = "") -> str:
    text = json.dumps(key_document(job, inputs, runtime, history), sort_keys=True, separators=(",", ":"), default=list)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
