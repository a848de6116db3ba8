"""`edge-gateway run -c FILE`: the daemon in the foreground."""

from __future__ import annotations

import argparse
import logging
import sys

from gateway.cli import EXIT_CONFIG
from gateway.config import ConfigError, load_config

log = logging.getLogger("gateway")


def main(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        for p in exc.problems:
            print(p, file=sys.stderr)
        return EXIT_CONFIG
    from gateway.daemon import Gateway
    from gateway.mqtt.publisher import SecretError

    try:
        gw = Gateway(cfg)
    except SecretError as exc:
        print(f"{args.config}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    from gateway.service.watchdog import attach

    # systemd (NOTIFY_SOCKET, WATCHDOG_USEC): READY/STATUS/WATCHDOG/STOPPING; no-op outside it.
    glue = attach(gw)
    return gw.run(glue.tick)
