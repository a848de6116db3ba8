"""`edge-gateway check -c FILE`: validate only."""

from __future__ import annotations

import argparse
import sys

from gateway.cli import EXIT_CONFIG
from gateway.config import ConfigError, load_config


def main(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        for p in exc.problems:
            print(p, file=sys.stderr)
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
