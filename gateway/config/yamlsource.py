"""YAML loading that remembers where every value came from.

PyYAML's safe loader forgets line numbers and silently keeps the last of two
duplicate keys. We compose the node graph ourselves so that every validation
error can point at `FILE:LINE`, and a duplicate key is an error of its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

Path = tuple[str | int, ...]


@dataclass
class SourceMap:
    """Line numbers (1-based) of every mapping key and value in a document."""

    lines: dict[Path, int] = field(default_factory=dict)

    def line_of(self, path: Path) -> int:
        """The line of `path`, or of its nearest ancestor that exists."""
        p = tuple(path)
        while p:
            if p in self.lines:
                return self.lines[p]
            p = p[:-1]
        return self.lines.get((), 1)


class YamlProblem(Exception):
    """A document that cannot be turned into data (syntax, duplicate keys)."""

    def __init__(self, line: int, path: str, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.path = path
        self.message = message


def load_with_lines(text: str) -> tuple[Any, SourceMap]:
    """Parse `text` into plain Python data plus a map of source lines.

    Raises YamlProblem for syntax errors, multiple documents, anchors gone wrong
    and duplicate mapping keys.
    """
    smap = SourceMap()
    try:
        nodes = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        what = exc.problem or str(exc)
        if exc.context:
            what = f"{exc.context}, {what}"
        raise YamlProblem(line, "(yaml)", f"YAML syntax error: {what}") from None
    except yaml.YAMLError as exc:
        raise YamlProblem(1, "(yaml)", f"YAML error: {exc}") from None
    if len(nodes) > 1:
        raise YamlProblem(
            nodes[1].start_mark.line + 1, "(yaml)", "more than one YAML document in the file"
        )
    if not nodes or nodes[0] is None:
        return None, smap
    root = nodes[0]
    smap.lines[()] = root.start_mark.line + 1
    constructor = yaml.SafeLoader("")  # used only for scalar construction
    try:
        data = _build(root, (), smap, constructor)
    finally:
        constructor.dispose()
    return data, smap


def _dotted(path: Path) -> str:
    return ".".join(str(p) for p in path) or "(top)"


def _build(node: yaml.Node, path: Path, smap: SourceMap, ctor: yaml.SafeLoader) -> Any:
    smap.lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        ctor.flatten_mapping(node)  # resolves `<<: *anchor` merges
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = ctor.construct_object(key_node, deep=True)
            if not isinstance(key, str | int | float | bool) and key is not None:
                raise YamlProblem(
                    key_node.start_mark.line + 1, _dotted(path), "mapping keys must be plain scalars"
                )
            skey = str(key) if not isinstance(key, str) else key
            if skey in out:
                raise YamlProblem(
                    key_node.start_mark.line + 1,
                    _dotted((*path, skey)),
                    f"duplicate key (first given on line {smap.lines[(*path, skey)]})",
                )
            child = (*path, skey)
            smap.lines[child] = key_node.start_mark.line + 1
            out[skey] = _build(value_node, child, smap, ctor)
        return out
    if isinstance(node, yaml.SequenceNode):
        items = []
        for i, item in enumerate(node.value):
            child = (*path, i)
            smap.lines[child] = item.start_mark.line + 1
            items.append(_build(item, child, smap, ctor))
        return items
    return ctor.construct_object(node, deep=True)
