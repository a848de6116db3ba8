"""`edge-gateway check [-c FILE]`: validate only."""

from __future__ import annotations

import argparse
import sys

from gateway.cli import EXIT_CONFIG
from gateway.commands import load_or_report
from gateway.config.checks import run_warnings
from gateway.logs import print_error
from gateway.service.checks import deep_checks

__all__ = ["deep_checks", "main"]


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def main(args: argparse.Namespace) -> int:
    cfg = load_or_report(args.config)
    if cfg is None:
        return EXIT_CONFIG
    problems = deep_checks(cfg)
    if problems:
        for line in problems:
            print_error(line)
        return EXIT_CONFIG
    warnings = [str(w) for w in run_warnings(cfg)]
    for line in warnings:
        print(line, file=sys.stderr)
    extra = f"; {plural(len(warnings), 'warning')} above" if warnings else ""
    print(f"{args.config}: ok ({plural(len(cfg.devices), 'device')}{extra})")
    return 0
