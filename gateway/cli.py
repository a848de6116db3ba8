"""The `edge-gateway` command line."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from gateway import __version__
from gateway.logs import setup_logging

EXIT_CONFIG = 2
#: Where `make install` puts the config; every command's -c defaults to it.
DEFAULT_CONFIG = "/etc/edge-gateway/config.yaml"


def add_config(p: argparse.ArgumentParser, *, default: str | None = DEFAULT_CONFIG,
               text: str = "YAML config file") -> None:
    more = f" (default: {default})" if default else ""
    p.add_argument("-c", "--config", default=default, metavar="FILE", help=text + more)


def command(sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, summary: str,
            description: str, examples: str) -> argparse.ArgumentParser:
    """A sub-command whose --help has a description and examples."""
    return sub.add_parser(
        name, help=summary, description=f"{summary[0].upper()}{summary[1:]}.\n\n{description}",
        epilog="examples:\n" + examples, formatter_class=argparse.RawDescriptionHelpFormatter)


RUN_HELP = """\
Starts the readers, the spool and the publisher, and runs until stopped.
It logs to stderr (with <N> priority prefixes under systemd, for journalctl -p).

signals:
  SIGTERM, SIGINT  stop gracefully: readings already accepted stay in the spool,
                   the gateway publishes 'offline' and exits 0
  SIGHUP           reload the config; only changed devices restart, queued data kept

exit status:
  0  stopped by a signal
  2  the config is invalid (one line per problem on stderr), or a file it names
     (password, spool) cannot be used
  1  an unexpected error (a bug: its traceback is logged)"""

CHECK_HELP = """\
Reads the config and every file it names, prints 'FILE: ok (N devices)' and exits
0, or prints one 'FILE:LINE: path: problem' line per problem on stderr and exits 2.
Warnings (exit 0): a spool this user cannot write, device nodes that are missing
or not accessible (I2C not enabled, not in group i2c/dialout)."""

TEST_HELP = """\
Like `telegraf --test`: opens every configured device, reads each once, prints the
values and exits; no broker and no spool are used. With `gateway.simulate: true`
the simulator answers. Exit 0 when every device gave a reading, 1 otherwise."""


def build_parser(optional: bool = True) -> argparse.ArgumentParser:
    """The whole command line; `optional=False` leaves out the commands that live in
    modules of their own (scan, watch, reload, install, completion)."""
    parser = argparse.ArgumentParser(
        prog="edge-gateway",
        description=(
            "IoT edge gateway: reads I2C and serial sensors, runs optional on-device "
            "inference, and delivers every reading to an MQTT broker."
        ),
        epilog=("Run 'edge-gateway COMMAND --help' for the options of a command. "
                f"-c FILE defaults to {DEFAULT_CONFIG} everywhere."),
    )
    parser.add_argument("--log-level", default="info",
                        choices=["debug", "info", "warning", "error"], help="default: info")
    parser.add_argument("--version", action="version", version=f"edge-gateway {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = command(sub, "run", "run the gateway in the foreground (what systemd starts)", RUN_HELP,
                "  edge-gateway run                        # /etc/edge-gateway/config.yaml\n"
                "  edge-gateway run -c config/simulator.yaml\n"
                "  sudo -u edge-gateway edge-gateway run   # by hand, as the service's user\n")
    add_config(p)
    p.set_defaults(func="gateway.commands.run:main", plain_models=True)

    p = command(sub, "check", "validate a config file; exit 2 with one line per problem",
                CHECK_HELP,
                "  edge-gateway check\n"
                "  edge-gateway check -c config/simulator.yaml\n")
    add_config(p)
    p.set_defaults(func="gateway.commands.check:main")

    p = command(sub, "test", "read every configured device once and print the values",
                TEST_HELP,
                "  edge-gateway test                       # the installed config, real hardware\n"
                "  edge-gateway test -c config/simulator.yaml\n")
    add_config(p)
    p.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS",
                   help="how long to wait for each device's first reading (default: 30)")
    p.set_defaults(func="gateway.commands.test:main")

    p = sub.add_parser("version", help="print the version")
    p.set_defaults(func="gateway.commands.version:main")

    if optional:
        _register_optional(sub)
    return parser


def _register_optional(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Commands that live in their own modules add their parsers here."""
    for name in ("scan", "watch", "reload", "install", "completion"):
        try:
            module = importlib.import_module(f"gateway.commands.{name}")
        except ImportError:
            continue
        module.add_parser(sub)


def _command_of(argv: Sequence[str]) -> str | None:
    """The command named in `argv` (after the global options), if any."""
    words = iter(argv)
    for word in words:
        if word == "--log-level":
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # The daemon does not load the other commands' modules only to list them (memory
    # on a Pi: docs/small-pi.md); `edge-gateway run` never shows them.
    parser = build_parser(optional=_command_of(argv) != "run")
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    if getattr(args, "plain_models", False):
        # Before any model module loads: the daemon never loads pydantic (config.mode).
        from gateway.config.mode import use_plain_models

        use_plain_models()
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
