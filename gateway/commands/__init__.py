"""One module per CLI command; each has `main(args) -> exit code`."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.config import Problem
    from gateway.config.model import Config

#: What to do when the installed config cannot be read (it is root:edge-gateway 0640).
UNREADABLE_HINT = ("run as a member of group edge-gateway (sudo usermod -aG edge-gateway $USER, "
                   "then log in again) or with sudo")


def load_or_report(path: str, *, unreadable_hint: str = UNREADABLE_HINT) -> Config | None:
    """The validated config, or None after printing one line per problem to stderr."""
    from gateway.config import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(with_hint(problem, unreadable_hint), file=sys.stderr)
        return None


def with_hint(problem: Problem, unreadable_hint: str = UNREADABLE_HINT) -> str:
    """A file-level problem with what to do about it."""
    from gateway.cli import DEFAULT_CONFIG

    text = str(problem)
    if problem.path != "(file)":
        return text
    if "Permission denied" in problem.message:
        return f"{text}: {unreadable_hint}"
    if problem.message == "no such file" and problem.file == DEFAULT_CONFIG:
        return (f"{text} (the default config; pass -c FILE, or install the service with "
                "sudo make install, which writes it)")
    return text
