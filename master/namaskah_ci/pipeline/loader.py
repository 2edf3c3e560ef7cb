"""Safe, bounded YAML for pipeline files: plain data only, with the line of every key and item.

`parse(text, limits)` returns the document as dicts, lists, strings, numbers,
booleans and None, plus a `Lines` map from a key path (`("jobs", "lint",
"steps", 0)`) to its line in the file. It refuses what a pipeline file never
needs and what could make the master do work on someone's behalf: explicit
tags (`!!python/object`, `!Ref`, even `!!str`), duplicate keys (YAML silently
keeps the last one), non-string keys, documents nested deeper than
`limits.depth` or holding more than `limits.nodes` values (both counted with
aliases expanded), aliases inside the collection they name, and parsing past
`limits.deadline`. Nothing is constructed but plain data.

The work is bounded before it is done. PyYAML's parser, which is iterative, is
read to the end first and every event checked: its scanner refuses the flow
bracket past the depth at once (an unbounded `[[[[...` costs it time quadratic
in the depth, 48 s for 60 KB), and the depth, the values an alias brings and the
deadline are checked at each event. Only then are the recorded events composed
(PyYAML's composer recurses once per level: at most `depth`) and turned into
data, the deadline checked at each value.
"""

from __future__ import annotations

import collections
import dataclasses
import time
from collections.abc import Callable
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.resolver import Resolver

DEFAULT_DEPTH = 32  # [limits] file_depth
DEFAULT_NODES = 20_000  # [limits] file_nodes; a pipeline file has a few hundred

Path = tuple[str | int, ...]  # of str keys and int indexes


class YamlProblem(Exception):
    """A problem at a line (1-based, 0 when unknown); the message has no file name."""

    def __init__(self, line: int, message: str):
        super().__init__(message)
        self.line = line
        self.message = message


class Deadline:
    """The time one file's parse and validation may take (`[limits] file_seconds`), checked as it goes."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic):
        self.seconds = seconds
        self.clock = clock
        self.end = clock() + seconds

    def passed(self) -> bool:
        return self.clock() > self.end

    @property
    def problem(self) -> str:
        return f"reading the file took more than {self.seconds:g} s ([limits] file_seconds)"

    def check(self, line: int) -> None:
        if self.passed():
            raise YamlProblem(line, self.problem)


@dataclasses.dataclass(frozen=True)
class Limits:
    depth: int = DEFAULT_DEPTH
    nodes: int = DEFAULT_NODES
    deadline: Deadline | None = None

    def too_deep(self, line: int) -> YamlProblem:
        return YamlProblem(line, f"nesting deeper than {self.depth} levels ([limits] file_depth)")

    def too_many(self, line: int) -> YamlProblem:
        return YamlProblem(line, f"more than {self.nodes} values, aliases expanded ([limits] file_nodes)")

    def check_time(self, line: int) -> None:
        if self.deadline is not None:
            self.deadline.check(line)


class Lines:
    """Key path → line; a path without an entry takes its nearest parent's line."""

    def __init__(self) -> None:
        self._lines: dict[Path, int] = {}

    def set(self, path: Path, line: int) -> None:
        self._lines.setdefault(path, line)

    def line(self, path: Path) -> int:
        path = tuple(path)
        while path:
            if path in self._lines:
                return self._lines[path]
            path = path[:-1]
        return self._lines.get((), 1)


_STANDARD_TAGS = {
    "tag:yaml.org,2002:" + name
    for name in ("str", "int", "float", "bool", "null", "map", "seq", "timestamp", "binary", "merge", "value")
}


def _line(event: yaml.Event) -> int:
    return event.start_mark.line + 1 if event.start_mark else 0


class _Scanner(yaml.SafeLoader):
    """PyYAML's parser, refusing a flow bracket (`[`, `{`) nested past the depth as soon as it is read."""

    def __init__(self, text: str, limits: Limits):
        super().__init__(text)
        self.limits = limits

    def fetch_flow_collection_start(self, TokenClass: type[yaml.Token]) -> None:
        if self.flow_level >= self.limits.depth:
            raise self.limits.too_deep(self.line + 1)
        super().fetch_flow_collection_start(TokenClass)


def _refuse_explicit_tag(event: yaml.Event) -> None:
    tag = getattr(event, "tag", None)
    if tag is None:
        return
    implicit = getattr(event, "implicit", True)
    explicit = not any(implicit) if isinstance(implicit, tuple) else not implicit
    if explicit or tag not in _STANDARD_TAGS:
        raise YamlProblem(_line(event), f"YAML tags are not allowed here (found {tag!r}): write plain values")


def _checked_events(text: str, limits: Limits) -> list[yaml.Event]:
    """Every event of the stream, once each is checked: tags, depth and values (aliases expanded), time."""
    scanner = _Scanner(text, limits)
    events: list[yaml.Event] = []
    open_: list[list[Any]] = []  # per open collection: [anchor, height of its deepest child]
    anchored: dict[str | None, tuple[int, int]] = {}  # anchor → (height, values) of the finished node it names
    values = 0
    try:
        while scanner.check_event():
            event = scanner.get_event()  # type: ignore[no-untyped-call]  # types-PyYAML: Parser.get_event unannotated
            events.append(event)
            line = _line(event)
            limits.check_time(line)
            _refuse_explicit_tag(event)
            if isinstance(event, (yaml.ScalarEvent, yaml.AliasEvent, yaml.CollectionStartEvent)):
                if isinstance(event, yaml.AliasEvent):
                    if any(frame[0] == event.anchor for frame in open_):
                        raise YamlProblem(line, f"alias *{event.anchor} is inside the collection it names")
                    height, size = anchored.get(event.anchor, (0, 1))  # undefined: the composer says so
                else:
                    height, size = (1, 1) if isinstance(event, yaml.CollectionStartEvent) else (0, 1)
                values += size
                if values > limits.nodes:
                    raise limits.too_many(line)
                if len(open_) + height > limits.depth:
                    raise limits.too_deep(line)
                if isinstance(event, yaml.CollectionStartEvent):
                    open_.append([event.anchor, 0, values])
                    continue
                if open_:
                    open_[-1][1] = max(open_[-1][1], height)
                if isinstance(event, yaml.ScalarEvent) and event.anchor:
                    anchored[event.anchor] = (0, 1)
            elif isinstance(event, yaml.CollectionEndEvent):
                anchor, below, first = open_.pop()
                if anchor:
                    anchored[anchor] = (below + 1, values - first + 1)
                if open_:
                    open_[-1][1] = max(open_[-1][1], below + 1)
    finally:
        scanner.dispose()
    return events


class _Composer(Composer, SafeConstructor, Resolver):
    """PyYAML's composer and safe constructor, reading events already checked."""

    def __init__(self, events: list[yaml.Event]):
        self.events = collections.deque(events)
        Composer.__init__(self)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)

    def check_event(self, *choices: type[yaml.Event]) -> bool:
        return bool(self.events) and (not choices or isinstance(self.events[0], choices))

    def peek_event(self) -> yaml.Event:
        return self.events[0]

    def get_event(self) -> yaml.Event:
        return self.events.popleft()


class _Builder:
    """Turns the composed node tree into plain data, recording lines (bounded by the checks above)."""

    def __init__(self, loader: _Composer, limits: Limits):
        self.loader = loader
        self.limits = limits
        self.lines = Lines()

    def build(self, node: yaml.Node, path: Path) -> Any:
        line = node.start_mark.line + 1
        self.limits.check_time(line)
        self.lines.set(path, line)
        if isinstance(node, yaml.MappingNode):
            own: set[str] = set()
            for key_node, _ in node.value:  # duplicates among the keys written here (not merged ones)
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.loader.construct_object(key_node, deep=True)
                if not isinstance(key, str):
                    raise YamlProblem(key_node.start_mark.line + 1, f"keys must be strings, got {key!r}")
                if key in own:
                    raise YamlProblem(key_node.start_mark.line + 1, f"duplicate key {key!r}")
                own.add(key)
            self.loader.flatten_mapping(node)  # `<<: *defaults`: merged keys first, the mapping's own override
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                key = self.loader.construct_object(key_node, deep=True)
                self.lines.set((*path, key), key_node.start_mark.line + 1)
                out[key] = self.build(value_node, (*path, key))
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, index)) for index, item in enumerate(node.value)]
        return self.loader.construct_object(node, deep=True)


def parse(text: str, limits: Limits = Limits()) -> tuple[Any, Lines]:
    """The document's data and its lines; raises YamlProblem."""
    try:
        loader = _Composer(_checked_events(text, limits))
        node = loader.get_single_node()
        if node is None:
            return None, Lines()
        builder = _Builder(loader, limits)
        return builder.build(node, ()), builder.lines
    except yaml.MarkedYAMLError as exc:
        problem = " ".join(str(part) for part in (exc.context, exc.problem) if part)
        # an unclosed bracket or quote is reported at the end of the file: name the line it opened on
        at_end = "<stream end>" in str(exc.problem) or "end of stream" in str(exc.problem)
        mark = (exc.context_mark if at_end else None) or exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 0
        raise YamlProblem(line, f"YAML syntax error: {problem}") from None
    except yaml.YAMLError as exc:
        raise YamlProblem(0, f"YAML syntax error: {exc}") from None
