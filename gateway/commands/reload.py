"""`edge-gateway reload --pid PID`: SIGHUP the daemon and wait for its verdict.

What the unit's `ExecReload=` runs, so `systemctl reload edge-gateway` exits
non-zero when the daemon rejects the new config (see gateway.service.reload_reply).
Exit 0: applied or unchanged; 1: rejected (each problem on stderr, `<3>` under the
journal), no answer in time, or no such process.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket

from gateway.logs import print_error
from gateway.service.reload_reply import decode_reply, reply_socket_path


def main(args: argparse.Namespace) -> int:
    path = reply_socket_path()
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    except OSError as exc:
        print_error(f"reload: cannot create a socket: {exc}")
        return 1
    with sock:
        try:
            path.unlink(missing_ok=True)  # left by a reload that was killed
            sock.bind(str(path))
        except OSError as exc:
            print_error(f"reload: cannot listen on {path} for the daemon's answer: {exc}")
            return 1
        try:
            os.kill(args.pid, signal.SIGHUP)
        except OSError as exc:
            print_error(f"reload: cannot signal the daemon (pid {args.pid}): {exc.strerror}")
            return 1
        sock.settimeout(args.timeout)
        try:
            data = sock.recv(1 << 16)
        except TimeoutError:
            print_error(f"reload: no answer from the daemon (pid {args.pid}) within "
                        f"{args.timeout:g} s")
            return 1
        finally:
            path.unlink(missing_ok=True)
    ok, summary, problems = decode_reply(data)
    if ok:
        print(f"reload: {summary}", flush=True)
        return 0
    for line in problems:
        print_error(f"reload: {line}")
    print_error(f"reload: {summary}")
    return 1


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    text = ("reload the running daemon's config (SIGHUP) and wait for its answer; "
            "exit 1 if it rejects the config (the unit's ExecReload=)")
    p = sub.add_parser("reload", help=text, description=text)
    p.add_argument("--pid", type=int, required=True, help="the daemon's pid ($MAINPID)")
    p.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                   help="how long to wait for the answer (default: 60)")
    p.set_defaults(func="gateway.commands.reload:main")
