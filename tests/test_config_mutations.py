"""Random typos in the shipped configs: `check` exits 0 or 2, never a traceback, and each
problem is one line `FILE:LINE: path: problem` at the right line.

The mutations are the ones a hand and an editor make: characters inserted, deleted or
replaced (tabs, control characters, bytes that are not UTF-8, a byte order mark, YAML's
own `[ { : ' " & * << | ! %`), and whole lines deleted, doubled, indented or dedented.

The right line, judged independently of the loader:
- a problem (or with exit 0, a warning) with a dotted path is on the line where that path
  is written in the mutated file (pyyaml's own node marks, walked here; a missing key: its
  nearest parent);
- a whole-file or syntax problem (`(file)`, `(yaml)`, `(top)`) is on a changed line or the
  content line just before or after one (a dedented line makes the line above it wrong,
  a deleted line the one after it), or its message names such a line ("... from line 24").

CONFIG_MUTATIONS=5000 runs more examples (default: 150 per shipped config).
"""

from __future__ import annotations

import ast
import contextlib
import difflib
import io
import json
import os
import re
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.cli import main
from tests.support import REPO

#: Read once: the strategy must draw the same way for the same choices.
SHIPPED = [p.read_bytes() for p in sorted((REPO / "config").glob("*.yaml"))]
EXAMPLES = int(os.environ.get("CONFIG_MUTATIONS", "150"))

#: Bytes a typo or a bad editor puts into a file, and YAML's own syntax.
PIECES = [
    b"\t", b"\x00", b"\x07", b"\x1b", b"\x7f", b"\xff", b"\xc3", b"\xe2\x80", b"\xef\xbb\xbf",
    b"\r", b"\n", b" ", b"  ", b"[", b"]", b"{", b"}", b":", b": ", b",", b"'", b'"', b"#",
    b"-", b"- ", b"?", b"|", b">", b"!", b"!!binary ", b"!!python/object ", b"%", b"@", b"`",
    b"\\", b"=", b"&a ", b"*a", b"<<: ", b"<<: 1", b"<<: *a", b"---\n", b"...\n", b"~",
    b"0x", b"2026-13-45", "ü".encode(), "ü".encode("latin-1"),
]
#: Whole lines to insert.
LINES = [
    b"<<: 1", b"  <<: *a", b"x: &a {interval: 5s}", b"  <<: *a", b"[", b"{", b"'", b"\"",
    b"key: value: other", b"\t", b" - x", b"---", b"name: =", b"  name: =", b"x: *a",
    b"y: &a 1", b"  - name: extra", b"gateway: {}", b"%YAML 1.1",
]

piece = st.one_of(st.sampled_from(PIECES), st.binary(min_size=1, max_size=3))


@st.composite
def mutation(draw: st.DrawFn, data: bytes) -> bytes:
    lines = data.split(b"\n")
    kind = draw(st.sampled_from(["insert", "delete", "replace", "line-delete", "line-double",
                                 "indent", "dedent", "tab-indent", "line-insert"]))
    if kind in ("insert", "delete", "replace"):
        at = draw(st.integers(0, len(data)))
        if kind == "delete":
            return data[:at] + data[at + draw(st.integers(1, 3)):]
        cut = 0 if kind == "insert" else draw(st.integers(1, 3))
        return data[:at] + draw(piece) + data[at + cut:]
    i = draw(st.integers(0, len(lines) - 1))
    line = lines[i]
    if kind == "line-delete":
        new = []
    elif kind == "line-double":
        new = [line, line]
    elif kind == "indent":
        new = [b" " * draw(st.integers(1, 3)) + line]
    elif kind == "dedent":
        new = [line[1:] if line.startswith(b" ") else line]
    elif kind == "tab-indent":
        new = [b"\t" + line.lstrip(b" ")]
    else:
        new = [draw(st.sampled_from(LINES)), line]
    return b"\n".join(lines[:i] + new + lines[i + 1:])


@st.composite
def mutated_config(draw: st.DrawFn) -> tuple[bytes, bytes]:
    original = draw(st.sampled_from(SHIPPED))
    data = original
    for _ in range(draw(st.integers(1, 3))):
        data = draw(mutation(data))
    return original, data


PART = r"(?:[\w<-]+|'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")"
PATH = rf"(?:\((?:top|yaml|file)\)|{PART}(?:\.{PART})*)"
JARGON = ("<block", "<scalar>", "token", "<unicode string>", "position ", "Traceback",
          "<document", "<stream")


def run_check(path: Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["check", "-c", str(path)])
    return code, out.getvalue(), err.getvalue()


def changed_lines(original: bytes, mutated: bytes) -> set[int]:
    """1-based lines of `mutated` that differ from `original` (a deletion: both neighbours)."""
    a, b = original.split(b"\n"), mutated.split(b"\n")
    changed: set[int] = set()
    for tag, _i1, _i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        changed.update(range(j1 + 1, j2 + 1))
        if j1 == j2:
            changed.update({j1, j1 + 1})
    return changed


def near(changed: set[int], mutated: bytes) -> set[int]:
    """Changed lines plus the nearest content line above and below each."""
    lines = mutated.split(b"\n")

    def content(n: int) -> bool:
        text = lines[n - 1].strip() if 0 < n <= len(lines) else b""
        return bool(text) and not text.startswith(b"#")

    out = set(changed)
    for c in changed:
        for step in (-1, 1):
            n = c + step
            while 0 < n <= len(lines) and not content(n):
                n += step
            out.add(max(1, n))
    return out


def split_path(path: str) -> list[str | int]:
    parts: list[str | int] = []
    for part in re.findall(PART, path):
        if part[0] in "'\"":
            parts.append(ast.literal_eval(part))
        else:
            parts.append(int(part) if part.isdigit() else part)
    return parts


def lines_of_path(text: str, path: list[str | int]) -> set[int] | None:
    """Where `path` is written, by pyyaml's node marks (None: the file does not compose).

    A key given twice is written in two places; a missing key is at its nearest parent.
    """
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None
    if root is None:
        return {1}

    def line(mark: yaml.Mark) -> int:
        return text.count("\n", 0, mark.index) + 1

    here = [(line(root.start_mark), root)]
    for part in path:
        found = [(line(mark), child) for _, node in here for mark, child in _children(node, part)]
        if not found:
            break
        here = found
    return {where for where, _ in here}


def _children(node: yaml.Node, part: str | int) -> list[tuple[yaml.Mark, yaml.Node]]:
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
        return [(node.value[part].start_mark, node.value[part])]
    if not isinstance(node, yaml.MappingNode):
        return []
    found: list[tuple[yaml.Mark, yaml.Node]] = []
    merged: list[yaml.Node] = []
    for k, v in node.value:
        if isinstance(k, yaml.ScalarNode) and k.value == str(part):
            found.append((k.start_mark, v))
        elif k.tag == "tag:yaml.org,2002:merge":
            merged += v.value if isinstance(v, yaml.SequenceNode) else [v]
    for source in merged if not found else []:
        found += _children(source, part)
    return found


def around(data: bytes, line: int) -> str:
    """The lines near `line`, numbered (for a failure message)."""
    lines = data.split(b"\n")
    return "\n".join(f"{n:4} {lines[n - 1]!r}" for n in range(max(1, line - 4),
                                                              min(len(lines), line + 4) + 1))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mutations")


@settings(max_examples=EXAMPLES * len(SHIPPED), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(case=mutated_config())
def test_a_mutated_config_gets_exit_0_or_2_and_one_right_line_per_problem(
    case: tuple[bytes, bytes], workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO)  # the shipped configs name models/ relative to the repository
    original, data = case
    assert judge(original, data, workdir / "gw.yaml") == []


def judge(original: bytes, data: bytes, path: Path) -> list[str]:
    """What is wrong with `check`'s answer for `data` (a mutation of `original`)."""
    path.write_bytes(data)
    code, out, err = run_check(path)  # an exception here is the traceback a user would see
    if code not in (0, 2):
        return [f"exit {code}: {err}"]
    if code == 0 and not out.startswith(f"{path}: ok"):
        return [f"exit 0 with {out!r} {err!r}"]
    if code == 2 and (out != "" or not err):
        return [f"exit 2 with stdout {out!r} and stderr {err!r}"]
    text = data.decode("utf-8-sig", errors="replace")
    allowed = near(changed_lines(original, data), data)
    wrong: list[str] = []
    for problem in err.splitlines():
        m = re.fullmatch(rf"{re.escape(str(path))}:(\d+): ({PATH}): (.+)", problem)
        if not m:
            wrong.append(f"not FILE:LINE: path: problem: {problem!r}")
            continue
        line, where, message = int(m.group(1)), m.group(2), m.group(3)
        if code == 0 and not message.startswith("warning: "):
            wrong.append(f"exit 0 with a problem: {problem}")
        if any(j in message for j in JARGON):
            wrong.append(f"parser jargon: {problem}")
        if where.startswith("("):
            # The line, or a line the message sends the reader to, is where the typo is.
            named = {int(n) for n in re.findall(r"line (\d+)", message)}
            if not ({line} | named) & allowed:
                wrong.append(f"wrong line (expected one of {sorted(allowed)}): "
                             f"{problem}\n{around(data, line)}")
        else:
            expected = lines_of_path(text, split_path(where))
            if expected is not None and line not in expected:
                wrong.append(f"wrong line (expected one of {sorted(expected)}): "
                             f"{problem}\n{around(data, line)}")
    return wrong


@settings(max_examples=EXAMPLES * len(SHIPPED), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(case=mutated_config())
def test_a_mutated_config_that_validates_reaches_the_daemon_unchanged(
        case: tuple[bytes, bytes]) -> None:
    """The daemon gets its config as the values a validating child hands over
    (gateway.config.snapshot): any config that validates, typos that happen to be
    valid included, must come back from that hand-over equal to what was validated."""
    from gateway.config import ConfigError, parse_config
    from gateway.config.loader import decode_config
    from gateway.config.snapshot import restore, values_of

    _, data = case
    try:
        cfg = parse_config(decode_config(data, "mutated.yaml"), "mutated.yaml")
    except ConfigError:
        return  # refused: the test above holds check to its lines
    assert restore(json.loads(json.dumps(values_of(cfg)))) == cfg
