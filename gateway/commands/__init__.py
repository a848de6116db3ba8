"""One module per CLI command; each has `main(args) -> exit code`."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.config.model import Config


def load_or_report(path: str) -> Config | None:
    """The validated config, or None after printing one line per problem to stderr."""
    from gateway.config import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return None
