"""Safe YAML for pipeline files: plain data only, with the line of every key and item.

`parse(text, source)` returns the document as dicts, lists, strings, numbers,
booleans and None, plus a `Lines` map from a key path (`("jobs", "lint",
"steps", 0)`) to its line in the file. It refuses what a pipeline file never
needs and what could make the master do work on someone's behalf: explicit
tags (`!!python/object`, `!Ref`, even `!!str`), duplicate keys (YAML silently
keeps the last one), non-string keys and documents that expand to too many
nodes through aliases. Nothing is constructed but plain data.
"""

from __future__ import annotations

from typing import Any

import yaml

MAX_NODES = 20_000  # after aliases are expanded; a pipeline file has a few hundred

Path = tuple  # of str keys and int indexes


class YamlProblem(Exception):
    """A problem at a line (1-based, 0 when unknown); the message has no file name."""

    def __init__(self, line: int, message: str):
        super().__init__(message)
        self.line = line
        self.message = message


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


def _refuse_explicit_tags(text: str) -> None:
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        tag = getattr(event, "tag", None)
        if tag is None:
            continue
        implicit = getattr(event, "implicit", True)
        explicit = not any(implicit) if isinstance(implicit, tuple) else not implicit
        if explicit or tag not in _STANDARD_TAGS:
            line = event.start_mark.line + 1 if event.start_mark else 0
            raise YamlProblem(line, f"YAML tags are not allowed here (found {tag!r}): write plain values")


class _Builder:
    """Turns the composed node tree into plain data, recording lines and counting nodes."""

    def __init__(self, loader: yaml.SafeLoader):
        self.loader = loader
        self.lines = Lines()
        self.count = 0

    def build(self, node: yaml.Node, path: Path) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise YamlProblem(node.start_mark.line + 1, f"the document has more than {MAX_NODES} values")
        self.lines.set(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            own: set = set()
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


def parse(text: str) -> tuple[Any, Lines]:
    """The document's data and its lines; raises YamlProblem."""
    try:
        _refuse_explicit_tags(text)
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return None, Lines()
            builder = _Builder(loader)
            return builder.build(node, ()), builder.lines
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        problem = " ".join(str(part) for part in (exc.context, exc.problem) if part)
        # an unclosed bracket or quote is reported at the end of the file: name the line it opened on
        at_end = "<stream end>" in str(exc.problem) or "end of stream" in str(exc.problem)
        mark = (exc.context_mark if at_end else None) or exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 0
        raise YamlProblem(line, f"YAML syntax error: {problem}") from None
    except yaml.YAMLError as exc:
        raise YamlProblem(0, f"YAML syntax error: {exc}") from None
