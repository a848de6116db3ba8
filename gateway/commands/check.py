"""`edge-gateway check -c FILE`: validate only."""

from __future__ import annotations

import argparse
import sys

from gateway.cli import EXIT_CONFIG
from gateway.commands import load_or_report


def main(args: argparse.Namespace) -> int:
    cfg = load_or_report(args.config)
    if cfg is None:
        return EXIT_CONFIG
    problems = deep_checks(cfg)
    if problems:
        for line in problems:
            print(line, file=sys.stderr)
        return EXIT_CONFIG
    print(f"{args.config}: ok ({len(cfg.devices)} devices)")
    return 0


def deep_checks(cfg: object) -> list[str]:
    """Checks beyond the schema (files that must exist, models that must load)."""
    from gateway.config.checks import run_checks

    return [str(p) for p in run_checks(cfg)]
