"""The `edge-gateway` command line."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from gateway import __version__

EXIT_CONFIG = 2


def _add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", required=True, metavar="FILE", help="YAML config file")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge-gateway",
        description=(
            "IoT edge gateway: reads I2C and serial sensors, runs optional on-device "
            "inference, and delivers every reading to an MQTT broker."
        ),
        epilog="Run 'edge-gateway COMMAND --help' for the options of a command.",
    )
    parser.add_argument("--log-level", default="info",
                        choices=["debug", "info", "warning", "error"], help="default: info")
    parser.add_argument("--version", action="version", version=f"edge-gateway {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("run", help="run the gateway in the foreground (what systemd starts)")
    _add_config(p)
    p.set_defaults(func="gateway.commands.run:main")

    p = sub.add_parser("check", help="validate a config file; exit 2 with one line per problem")
    _add_config(p)
    p.set_defaults(func="gateway.commands.check:main")

    p = sub.add_parser("version", help="print the version")
    p.set_defaults(func="gateway.commands.version:main")

    _register_optional(sub)
    return parser


def _register_optional(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Commands that live in their own modules add their parsers here."""
    for name in ("scan", "watch", "install", "completion"):
        try:
            module = importlib.import_module(f"gateway.commands.{name}")
        except ImportError:
            continue
        module.add_parser(sub)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from gateway.logs import setup_logging

    setup_logging(args.log_level)
    target = args.func
    if isinstance(target, str):
        mod, _, fn = target.partition(":")
        func: Callable[[argparse.Namespace], int] = getattr(importlib.import_module(mod), fn)
    else:
        func = target
    try:
        return func(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
