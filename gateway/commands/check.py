"""`edge-gateway check [-c FILE]`: validate only."""

from __future__ import annotations

import argparse
import sys

from gateway.cli import EXIT_CONFIG
from gateway.commands import load_or_report


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def main(args: argparse.Namespace) -> int:
    cfg = load_or_report(args.config)
    if cfg is None:
        return EXIT_CONFIG
    problems = deep_checks(cfg)
    if problems:
        for line in problems:
            print(line, file=sys.stderr)
        return EXIT_CONFIG
    from gateway.config.checks import run_warnings

    warnings = [str(w) for w in run_warnings(cfg)]
    for line in warnings:
        print(line, file=sys.stderr)
    extra = f"; {plural(len(warnings), 'warning')} above" if warnings else ""
    print(f"{args.config}: ok ({plural(len(cfg.devices), 'device')}{extra})")
    return 0


def deep_checks(cfg: object) -> list[str]:
    """Checks beyond the schema (files that must exist, models that must load)."""
    from gateway.config.checks import run_checks

    return [str(p) for p in run_checks(cfg)]
