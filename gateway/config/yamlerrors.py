"""PyYAML's syntax errors in plain words, at the line to look at.

The parser says `found character '\\t' that cannot start any token` or
`expected <block end>, but found '<block mapping start>'`; a user needs "a tab
is used for indentation" or "the indentation does not line up". An unclosed
`[`, `{` or quote is reported where it was opened (the parser notices only
lines later). The table of cases comes from mutating the shipped configs
(tests/test_config_mutations.py); anything not recognised keeps the parser's
own problem text, still at its line.
"""

from __future__ import annotations

import bisect
import re
from typing import Any

import yaml


class LineIndex:
    """Character offset -> line number, counting `\\n` only (what editors and grep -n show).

    PyYAML also counts `\\r`, NEL and U+2028 as line breaks, so its own `mark.line`
    drifts from the editor's; offsets (`mark.index`) do not.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self._starts = [0] + [m.end() for m in re.finditer("\n", text)]

    def line(self, index: int) -> int:
        return bisect.bisect_right(self._starts, index)

    def of(self, mark: Any) -> int:
        """The line of a pyyaml mark (the pure-Python or the libyaml kind), 1 for none."""
        return 1 if mark is None else self.line(mark.index)

    def text_of(self, line: int) -> str:
        start = self._starts[line - 1] if 0 < line <= len(self._starts) else len(self.text)
        end = self.text.find("\n", start)
        return self.text[start:] if end < 0 else self.text[start:end]


INDENT = "the indentation of this line does not line up with the lines above"
DIRECTIVE = "a line that starts with '%' is a YAML directive; quote the value or indent it"
SECOND_DOCUMENT = ("a second YAML document starts here ('---' or '...' at the start of a line); "
                   "a config file is one document")


def explain(exc: yaml.MarkedYAMLError, index: LineIndex) -> tuple[int, str]:
    """(line, message) for a scanner, parser or composer error."""
    context = exc.context or ""
    problem = exc.problem or ""
    text = index.text
    at = index.of(exc.problem_mark)
    opened = index.of(exc.context_mark) if exc.context_mark is not None else at
    opener = _char(text, exc.context_mark)

    tab = _tab_line(index, at, opened)
    if tab is not None:
        return tab
    second = second_document(index)
    if second is not None and second <= at:
        return second, SECOND_DOCUMENT
    if isinstance(exc, yaml.composer.ComposerError):
        name = re.search(r"anchor '([^']*)'|alias '([^']*)'", problem + context)
        label = next((g for g in name.groups() if g is not None), "?") if name else "?"
        if "undefined alias" in problem:
            return at, f"'*{label}' refers to an anchor '&{label}' that is not defined above it"
        if "duplicate anchor" in context:
            return at, f"anchor '&{label}' is already defined on line {opened}"
    if "quoted scalar" in context:
        if "end of stream" in problem or "document separator" in problem:
            return opened, f"the {opener} quote opened here is never closed"
        if "escape" in problem:
            return at, ("unknown escape in double quotes: write '\\\\' for a backslash, "
                        "or use single quotes")
    if context in ("while parsing a flow sequence", "while parsing a flow mapping"):
        closer = "]" if opener == "[" else "}"
        if exc.context_mark is not None and not closes(text, exc.context_mark.index):
            return opened, f"'{opener}' opened here is never closed"
        return at, f"expected ',' or '{closer}' here, inside the '{opener}' opened on line {opened}"
    if "simple key" in context:
        return opened, ("this line has no ':' after its key (write 'key: value'; "
                        "quote a value that contains ':' or '#')")
    if "block scalar" in context:
        return opened, (f"'{opener}' starts a block of text and must end the line; "
                        f"quote a value that starts with '{opener}'")
    if "directive" in context:
        return opened, DIRECTIVE
    if "an alias" in context or "an anchor" in context:
        return opened, (f"'{opener}' must be followed by a name ('*defaults', '&defaults'); "
                        f"quote a value that starts with '{opener}'")
    if "tag" in context:
        return opened, "'!' starts a YAML tag; quote a value that starts with '!'"
    found = _found(problem)
    if found in ("]", "}"):
        return at, f"'{found}' closes a bracket that was never opened"
    if "that cannot start any token" in problem:
        char = _char(text, exc.problem_mark)
        return at, f"a value cannot start with '{char}' (reserved in YAML); put it in quotes"
    if "expected <block end>" in problem:
        if found == ",":
            return at, "',' outside [ ] or { }; quote the value"
        return at, _indent_message(index, at)
    if "not allowed here" in problem:
        return _not_allowed(index, at, exc.problem_mark, problem)
    if "expected the node content" in problem:
        if found == ",":
            return at, "a value is missing before ','"
        return at, f"a value cannot start with {_found_words(found)}; quote it"
    if "<document start>" in problem:
        return _after_document(index, at)
    return at, f"YAML syntax error: {problem or context}"


def _char(text: str, mark: yaml.Mark | None) -> str:
    if mark is None or not 0 <= mark.index < len(text):
        return "?"
    return text[mark.index]


def _found(problem: str) -> str:
    m = re.search(r"but (?:found|got) '([^']*)'", problem)
    return m.group(1) if m else ""


def _found_words(found: str) -> str:
    return f"'{found}'" if found and not found.startswith("<") else "this"


def _tab_line(index: LineIndex, *lines: int) -> tuple[int, str] | None:
    """A tab in the indentation of the line in error (or of the line where it began)."""
    for line in dict.fromkeys(lines):
        text = index.text_of(line)
        indent = text[: len(text) - len(text.lstrip(" \t"))]
        if "\t" in indent:
            return line, "tab character used for indentation: YAML needs spaces"
    return None


def _indent(text: str) -> int:
    return len(text) - len(text.lstrip(" "))


def _content_line_before(index: LineIndex, line: int) -> int | None:
    for prev in range(line - 1, 0, -1):
        stripped = index.text_of(prev).strip()
        if stripped and not stripped.startswith("#"):
            return prev
    return None


def _spaces(n: int) -> str:
    return f"{n} space{'' if n == 1 else 's'}"


def _indent_message(index: LineIndex, at: int) -> str:
    """INDENT, naming the indentation of the block above and the line where it begins."""
    prev = _content_line_before(index, at)
    mine = _indent(index.text_of(at))
    if prev is None or _indent(index.text_of(prev)) == mine:
        return INDENT
    theirs = _indent(index.text_of(prev))
    start = prev
    line: int | None = prev
    while line is not None and _indent(index.text_of(line)) >= theirs:
        if _indent(index.text_of(line)) == theirs:
            start = line
        line = _content_line_before(index, line)
    return (f"{INDENT} (this line: {_spaces(mine)}; the lines above: {_spaces(theirs)}, "
            f"from line {start})")


def _not_allowed(index: LineIndex, at: int, mark: yaml.Mark | None,
                 problem: str) -> tuple[int, str]:
    """`mapping values / sequence entries are not allowed here`."""
    what = "':'" if "mapping values" in problem else "'-'" if "sequence" in problem else "'?'"
    line_text = index.text_of(at)
    column = 0 if mark is None else mark.index - (index.text.rfind("\n", 0, mark.index) + 1)
    before = line_text[:column].lstrip(" -")
    if what == "':'" and re.search(r":(\s|$)", before):
        return at, "a second ':' on this line; quote a value that contains ': '"
    prev = _content_line_before(index, at)
    if prev is not None and _indent(line_text) > _indent(index.text_of(prev)):
        # The deeper line reads as more of the previous line's value, which cannot hold a key.
        return at, f"{INDENT} (it is deeper than line {prev}, which has a value already)"
    return at, f"{what} is not allowed here; quote a value that contains it"


def _after_document(index: LineIndex, at: int) -> tuple[int, str]:
    """More content after the document's top-level value ended."""
    root = next((e for e in _events(index) if isinstance(e, yaml.NodeEvent)), None)
    start = index.of(root.start_mark) if root is not None else 1
    for line in range(start, at + 1):
        if index.text_of(line).startswith("%"):  # a directive there ends the document
            return line, DIRECTIVE
    if isinstance(root, yaml.ScalarEvent) and start < at:
        return start, ("this line is not 'key: value' at the top level; the file must be a "
                       "mapping of sections (gateway:, mqtt:, ...)")
    column = getattr(root.start_mark, "column", 0) if root is not None else 0
    if column > 0 and start < at:
        return start, (f"the first key is indented by {column}; top-level keys "
                       "(gateway:, mqtt:, ...) start at the beginning of the line")
    return at, INDENT


def _events(index: LineIndex) -> list[yaml.Event]:
    """The parser's events up to the error."""
    events: list[yaml.Event] = []
    try:
        events.extend(yaml.parse(index.text, Loader=yaml.SafeLoader))
    except yaml.YAMLError:
        pass
    return events


def second_document(index: LineIndex) -> int | None:
    """The line of the '---' or '...' that ends the first document, if another follows."""
    ends = 0
    for event in _events(index):
        if isinstance(event, yaml.DocumentEndEvent) and event.explicit:
            return index.of(event.start_mark)
        if isinstance(event, yaml.DocumentStartEvent):
            ends += 1
            if ends == 2:
                return index.of(event.start_mark)
    return None


def closes(text: str, start: int) -> bool:
    """Whether the `[` or `{` at `start` is closed later (skipping quotes and comments)."""
    pairs = {"[": "]", "{": "}"}
    stack: list[str] = []
    i = start
    n = len(text)
    while i < n:
        c = text[i]
        if c in pairs:
            stack.append(pairs[c])
        elif c in "]}":
            if not stack or stack.pop() != c:
                return False
            if not stack:
                return True
        elif c in "'\"" and text[i - 1] in " \t\n[{,:":  # a quote starts only a value
            i = _skip_quoted(text, i)
        elif c == "#" and (i == 0 or text[i - 1] in " \t\n"):
            end = text.find("\n", i)
            i = n if end < 0 else end
        i += 1
    return False


def _skip_quoted(text: str, i: int) -> int:
    """Index of the closing quote of the string opening at `i` (or the end of the text)."""
    quote = text[i]
    i += 1
    while i < len(text):
        c = text[i]
        if quote == '"' and c == "\\":
            i += 2
            continue
        if c == quote:
            if quote == "'" and text[i + 1: i + 2] == "'":
                i += 2
                continue
            return i
        i += 1
    return len(text)
