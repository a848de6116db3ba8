"""YAML loading that remembers where every value came from.

PyYAML's safe loader forgets line numbers and silently keeps the last of two
duplicate keys. We compose the node graph ourselves so that every validation
error can point at `FILE:LINE`, and a duplicate key is an error of its own.

Nothing PyYAML raises escapes from here: every syntax error, bad tag, bad
alias or merge key and every value that cannot be constructed becomes a
`YamlProblem` with the line to look at and a message in plain words
(`yamlerrors.py` translates the parser's own).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path as FilePath
from typing import Any

import yaml

from gateway.config.yamlerrors import SECOND_DOCUMENT, LineIndex, explain, second_document

Path = tuple[str | int, ...]

#: Deeper than any real config; a hostile file could otherwise exhaust the stack.
MAX_DEPTH = 64
#: Values in the document counting every use of an alias (`*a` inside `*b` grows fast).
MAX_NODES = 200_000

_TAG = "tag:yaml.org,2002:"
_SCALAR_TAGS = {f"{_TAG}{t}" for t in ("str", "int", "float", "bool", "null", "timestamp")}
_MERGE = f"{_TAG}merge"
#: `=` alone is resolved to YAML 1.1's "value" tag, which no loader constructs: it is text.
_VALUE = f"{_TAG}value"
_KIND = {"str": "text", "int": "an integer", "float": "a number", "bool": "true/false",
         "null": "nothing", "timestamp": "a date"}

#: What PyYAML's reader refuses (yaml/reader.py NON_PRINTABLE), plus a byte order mark
#: anywhere but at the very start: invisible in an editor, it would end up inside a key.
_BAD_CHAR = re.compile("[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufefe\uff00-\ufffd"
                       "\U00010000-\U0010ffff]")


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
    """A document that cannot be turned into data (syntax, duplicate keys, ...).

    `also` holds further problems found at the same time (one per line).
    """

    def __init__(self, line: int, path: str, message: str,
                 also: tuple[YamlProblem, ...] = ()) -> None:
        super().__init__(message)
        self.line = line
        self.path = path
        self.message = message
        self.also = also

    def all(self) -> list[YamlProblem]:
        return [self, *self.also]


def dotted(path: Path) -> str:
    """`devices.0.name`; a key that is not a plain word is quoted so the line stays one line."""
    parts = [str(p) if isinstance(p, int) or re.fullmatch(r"[\w<-]+", p) else repr(p)
             for p in path]
    return ".".join(parts) or "(top)"


def decode(raw: bytes) -> str:
    """A file's text: UTF-8, with or without a byte order mark. Raises YamlProblem."""
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise YamlProblem(1, "(file)", "the file is UTF-16 text; save it as UTF-8")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        if b"\x00" in raw:
            raise YamlProblem(raw[: exc.start].count(b"\n") + 1, "(file)",
                              "not a text file (invalid UTF-8); expected YAML") from None
    # One problem per line holding bytes that are not UTF-8 (a Latin-1 'ü', a stray byte).
    found = []
    for number, line in enumerate(raw.split(b"\n"), start=1):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as exc:
            found.append(YamlProblem(
                number, "(file)", f"byte 0x{line[exc.start]:02x} at column {exc.start + 1} is "
                "not UTF-8 text; save the file as UTF-8"))
    if not found:
        found.append(YamlProblem(1, "(file)", "not UTF-8 text; save the file as UTF-8"))
    raise YamlProblem(found[0].line, found[0].path, found[0].message, tuple(found[1:]))


def bad_characters(text: str) -> list[YamlProblem]:
    """One problem per line holding a character YAML does not allow."""
    index = LineIndex(text)
    found: dict[int, YamlProblem] = {}
    for m in _BAD_CHAR.finditer(text, 1 if text.startswith("\ufeff") else 0):
        line = index.line(m.start())
        if line in found:
            continue
        column = m.start() - text.rfind("\n", 0, m.start())
        code = ord(m.group())
        what = ("an invisible byte order mark (U+FEFF)" if code == 0xFEFF
                else f"control character U+{code:04X}")
        found[line] = YamlProblem(
            line, "(file)", f"{what} at column {column} is not allowed in YAML; delete it")
    return list(found.values())


class _Loader(yaml.SafeLoader):
    """SafeLoader whose composer refuses nesting that would exhaust the stack."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise _TooDeep(self.peek_event().start_mark)  # type: ignore[no-untyped-call]
            node: yaml.Node = super().compose_node(parent, index)  # type: ignore[no-untyped-call,assignment]
            return node
        finally:
            self.depth -= 1


class _TooDeep(Exception):
    def __init__(self, mark: Any) -> None:
        self.mark = mark


def load_with_lines(text: str) -> tuple[Any, SourceMap]:
    """Parse `text` into plain Python data plus a map of source lines.

    Raises YamlProblem (with any further problems in `.also`) and nothing else.
    """
    bad = bad_characters(text)
    if bad:
        raise YamlProblem(bad[0].line, bad[0].path, bad[0].message, tuple(bad[1:]))
    index = LineIndex(text)
    nodes = _compose(text, index)
    if len(nodes) > 1:
        raise YamlProblem(second_document(index) or index.of(nodes[1].start_mark), "(yaml)",
                          SECOND_DOCUMENT)
    smap = SourceMap()
    if not nodes or nodes[0] is None:
        return None, smap
    builder = _Builder(index, smap)
    data = builder.build(nodes[0], (), 0)
    if builder.problems:
        first, *rest = builder.problems
        raise YamlProblem(first.line, first.path, first.message, tuple(rest))
    _remember(text, smap)
    return data, smap


_RECENT: dict[str, SourceMap] = {}


def _remember(text: str, smap: SourceMap) -> None:
    _RECENT.pop(text, None)
    _RECENT[text] = smap
    while len(_RECENT) > 4:
        del _RECENT[next(iter(_RECENT))]


def file_source_map(path: str) -> SourceMap | None:
    """The lines of the document in file `path` (None: it cannot be read or loaded now).

    A document that loaded recently is not parsed again (`check` needs its lines twice).
    """
    try:
        text = decode(FilePath(path).read_bytes())
    except (OSError, YamlProblem):
        return None
    if text not in _RECENT:
        try:
            load_with_lines(text)
        except YamlProblem:
            return None
    return _RECENT.get(text)


def _compose(text: str, index: LineIndex) -> list[yaml.Node]:
    loader = _Loader(text)
    try:
        nodes: list[yaml.Node] = []
        while loader.check_node():  # type: ignore[no-untyped-call]
            node = loader.get_node()  # type: ignore[no-untyped-call]
            if node is not None:
                nodes.append(node)
        return nodes
    except yaml.MarkedYAMLError as exc:
        line, message = explain(exc, index)
        raise YamlProblem(line, "(yaml)", message) from None
    except _TooDeep as exc:
        raise YamlProblem(index.of(exc.mark), "(yaml)",
                          f"nested more than {MAX_DEPTH} levels deep") from None
    except yaml.YAMLError as exc:  # a ReaderError; bad_characters() catches those first
        raise YamlProblem(1, "(file)", f"not readable as YAML: {exc}") from None
    finally:
        loader.dispose()


class _Builder:
    """Turns a composed node graph into dicts, lists and scalars, recording lines.

    Collects problems instead of stopping at the first, so that one run of `check`
    shows every bad tag, merge key and duplicate key at once.
    """

    def __init__(self, index: LineIndex, smap: SourceMap) -> None:
        self.index = index
        self.smap = smap
        self.problems: list[YamlProblem] = []
        self.ctor = yaml.SafeLoader("")  # only for scalar construction
        self._active: set[int] = set()  # nodes being built: an alias back to one is a cycle
        self._sizes: dict[int, int] = {}

    def line(self, node: yaml.Node) -> int:
        return self.index.of(node.start_mark)

    def problem(self, node: yaml.Node, path: Path, message: str) -> None:
        # An anchored value used by several aliases would report the same line each time.
        line = self.line(node)
        if not any(p.line == line and p.message == message for p in self.problems):
            self.problems.append(YamlProblem(line, dotted(path), message))

    def build(self, node: yaml.Node, path: Path, depth: int) -> Any:
        self.smap.lines.setdefault(path, self.line(node))
        if id(node) in self._active:
            self.problem(node, path, "an alias refers to a mapping or list that contains it")
            return None
        if depth > MAX_DEPTH:
            self.problem(node, path, f"nested more than {MAX_DEPTH} levels deep")
            return None
        if self._size(node, 0) > MAX_NODES and not any(
                self._size(child, 0) > MAX_NODES for child in _children(node)):
            # The innermost value that is too big: where the aliases multiply.
            self.problem(node, path, f"more than {MAX_NODES} values once aliases are expanded")
            return None
        self._active.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return self._mapping(node, path, depth)
            if isinstance(node, yaml.SequenceNode):
                return self._sequence(node, path, depth)
            return self._scalar(node, path)
        finally:
            self._active.discard(id(node))

    def _size(self, node: yaml.Node, depth: int) -> int:
        """How many values `node` expands to, aliases included (a cycle counts once)."""
        key = id(node)
        if key not in self._sizes:
            self._sizes[key] = 1  # a cycle back to here adds nothing; build() reports it
            if depth <= MAX_DEPTH:  # deeper: build() stops there anyway
                self._sizes[key] = 1 + sum(self._size(c, depth + 1) for c in _children(node))
        return self._sizes[key]

    def _tag_ok(self, node: yaml.Node, path: Path, allowed: str) -> bool:
        if node.tag == allowed or (isinstance(node, yaml.ScalarNode) and node.tag in _SCALAR_TAGS):
            return True
        self.problem(node, path, f"YAML tag {node.tag.replace(_TAG, '!!')!r} is not supported "
                                 "in this config; remove it (or quote a value that starts with '!')")
        return False

    def _sequence(self, node: yaml.SequenceNode, path: Path, depth: int) -> list[Any] | None:
        if not self._tag_ok(node, path, f"{_TAG}seq"):
            return None
        items = []
        for i, item in enumerate(node.value):
            child = (*path, i)
            self.smap.lines.setdefault(child, self.line(item))
            items.append(self.build(item, child, depth + 1))
        return items

    def _mapping(self, node: yaml.MappingNode, path: Path, depth: int) -> dict[str, Any] | None:
        if not self._tag_ok(node, path, f"{_TAG}map"):
            return None
        out: dict[str, Any] = {}
        merges: list[tuple[yaml.Node, yaml.Node]] = []
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag == _MERGE:
                merges.append((key_node, value_node))
                continue
            key = self._key(key_node, path)
            if key is None:
                continue
            child = (*path, key)
            if key in out:
                self.problem(key_node, child, f"duplicate key (first given on line "
                                              f"{self.smap.lines[child]})")
                continue
            # setdefault: a merged mapping is built at this path too, after the keys given here.
            self.smap.lines.setdefault(child, self.line(key_node))
            out[key] = self.build(value_node, child, depth + 1)
        # `<<: *defaults` (or a list of them): keys given here win, then the first merged.
        for key_node, value_node in merges:
            for source in self._merge_sources(key_node, value_node, path):
                merged = self.build(source, path, depth + 1)
                for key, value in (merged or {}).items():
                    if key not in out:
                        out[key] = value
        return out

    def _merge_sources(self, key_node: yaml.Node, value_node: yaml.Node,
                       path: Path) -> Iterator[yaml.MappingNode]:
        sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
        for source in sources:
            if isinstance(source, yaml.MappingNode):
                yield source
            else:
                self.problem(key_node, (*path, "<<"),
                             f"'<<' merges a mapping into this one ('<<: *defaults', where "
                             f"'&defaults' marks a mapping), not {_node_kind(source)}")
                return

    def _key(self, node: yaml.Node, path: Path) -> str | None:
        if not isinstance(node, yaml.ScalarNode):
            self.problem(node, path, "a key must be a plain word, not a mapping or list")
            return None
        key = self._scalar(node, path)
        if isinstance(key, str):
            return key
        if key is None and node.value == "" and node.style is None:
            self.problem(node, path, "a key is missing before ':'")
            return None
        # true/on/null/~ as a key: the word as written (YAML would make it True or None).
        return node.value if isinstance(key, bool) or key is None else str(key)

    def _scalar(self, node: yaml.Node, path: Path) -> Any:
        if node.tag == _VALUE:
            return node.value
        if not self._tag_ok(node, path, f"{_TAG}str"):
            return None
        try:
            return self.ctor.construct_object(node, deep=True)  # type: ignore[no-untyped-call]
        except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:
            kind = _KIND.get(node.tag.replace(_TAG, ""), node.tag)
            why = exc.problem if isinstance(exc, yaml.MarkedYAMLError) and exc.problem else exc
            self.problem(node, path, f"{node.value!r} looks like {kind} but is not one ({why}); "
                                     "quote it to use it as text")
            return None


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _node_kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    if isinstance(node, yaml.ScalarNode):
        return f"the value {node.value!r}"
    return "a mapping"
