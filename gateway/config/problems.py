"""A problem with a config file, reported as `FILE:LINE: dotted.path: what is wrong`."""

from __future__ import annotations

from typing import NamedTuple


# A NamedTuple: every daemon loads this module (why that matters: gateway.slots).
class Problem(NamedTuple):
    file: str
    line: int
    path: str
    message: str

    def __str__(self) -> str:
        # One problem, one line: a key or value with a line break in it is shown escaped.
        text = f"{self.file}:{self.line}: {self.path}: {self.message}"
        return text.replace("\r", "\\r").replace("\n", "\\n")


class ConfigError(Exception):
    """One or more problems with a config file."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems, key=lambda p: (p.line, p.path))
        super().__init__("\n".join(str(p) for p in self.problems))
