"""`python -m gateway.commands.config_child FILE`: validate FILE for the daemon.

The daemon runs on plain models and never loads pydantic (gateway.config.plain); it
starts this process at start and at each SIGHUP (gateway.config.snapshot). Here the
file is validated exactly as `check` validates it, and what comes back on stdout is a
JSON array: ["config", the models' values (snapshot.values_of), the deep checks'
problems] or ["problems", their rows, []].
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any


def main(argv: list[str]) -> int:
    """The child: validate the file, write (kind, values or problem rows, deep problems).

    `--deep`: also run the checks beyond the schema that `run` and a reload run
    (`start_checks`), here, so the daemon never loads PyYAML's line map for them."""
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # anything printed while validating goes to stderr, not into the answer
    from gateway.commands import install_sim_validator
    from gateway.config.loader import load_config
    from gateway.config.problems import ConfigError
    from gateway.config.snapshot import values_of
    from gateway.logs import setup_logging
    from gateway.service.checks import start_checks

    setup_logging("warning")  # what it logs looks like the daemon's own lines (journal)
    deep = argv[:1] == ["--deep"]
    path = argv[-1]
    install_sim_validator()
    result: tuple[str, Any, list[str]]
    try:
        cfg = load_config(path)
        result = ("config", values_of(cfg), start_checks(cfg) if deep else [])
    except ConfigError as exc:
        result = ("problems", [(p.file, p.line, p.path, p.message) for p in exc.problems], [])
    with out:
        out.write(json.dumps(result).encode())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
