"""`edge-gateway run -c FILE`: the daemon in the foreground."""

from __future__ import annotations

import argparse
import gc
import logging
import sys
from pathlib import Path

from gateway.cli import EXIT_CONFIG
from gateway.commands import load_or_report
from gateway.daemon import Gateway
from gateway.libc import limit_malloc_arenas
from gateway.logs import print_error
from gateway.mqtt.credentials import SecretError
from gateway.outbox.spool import SpoolError
from gateway.service.watchdog import attach

log = logging.getLogger("gateway")


#: The GIL's switch interval for the daemon (CPython's default is 5 ms). A thread that
#: returns from a commit's fsync or from select() must take the GIL back from whoever
#: holds it, waiting up to this long: the default was most of a reading's p99 latency
#: (benchmarks/bench_latency.py; docs/small-pi.md). Threads here mostly wait, so the
#: shorter interval costs almost nothing.
SWITCH_INTERVAL = 0.001


def main(args: argparse.Namespace) -> int:
    limit_malloc_arenas()
    sys.setswitchinterval(SWITCH_INTERVAL)
    # The config is checked here, in the main process, not by an ExecStartPre= step:
    # exit 2 is what RestartPreventExitStatus=2 keeps systemd from restarting in a loop
    # (it applies to the main process only), and print_error gives the lines `<3>`.
    # The model is not loaded here: one that does not load is the inference supervisor's
    # to retry, never a reason to keep the sensors down.
    cfg = load_or_report(args.config, deep=True)
    if cfg is None:
        return EXIT_CONFIG
    try:
        gw = Gateway(cfg)
    except SecretError as exc:
        print_error(f"{args.config}: {exc}")
        return EXIT_CONFIG
    except SpoolError as exc:
        from gateway.config.checks import not_writable, run_as_service_hint

        hint = f" ({run_as_service_hint(args.config)})" if not_writable(Path(cfg.buffer.path)) else ""
        print_error(f"{args.config}: buffer.path: {exc}{hint}")
        return EXIT_CONFIG
    # systemd (NOTIFY_SOCKET, WATCHDOG_USEC): READY/STATUS/WATCHDOG/STOPPING; no-op outside it.
    glue = attach(gw)
    freeze_startup_objects()
    return gw.run(glue.tick)


def freeze_startup_objects() -> int:
    """Move everything built so far (modules, the config's models, drivers: ~40,000
    objects) out of the cyclic garbage collector's sight; how many.

    They live as long as the daemon, yet every full collection walked all of them: a
    20 ms stop of every thread on a desktop core (more on a Pi), the largest single
    delay a reading met (benchmarks/bench_latency.py). Collecting first leaves only
    live objects to freeze; refcounting still frees any of them that goes away. (The
    memory start-up freed goes back to the system once it has settled: Gateway.run.)"""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
