"""`python -m hardware_sim serial --device gps|lines|modbus`: serve one device on a pty.

Prints the pty path and a stable symlink to it, so a config can point
`port:` at it by hand; runs until Ctrl-C.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType

from gateway.protocols.modbus import RegisterSpec
from hardware_sim.serial import GpsSim, LinesSim, ModbusSlaveSim, PtyDevice


def _serial_device(args: argparse.Namespace) -> PtyDevice:
    if args.device == "gps":
        return GpsSim("gps", {"rate_hz": args.rate, "talker": args.talker}, link_dir=args.link_dir)
    if args.device == "lines":
        fields = [("temperature_c", "float"), ("humidity_pct", "float")]
        return LinesSim("lines", args.format, fields, ",", {"rate_hz": args.rate},
                        link_dir=args.link_dir)
    bus = ModbusSlaveSim("modbus", link_dir=args.link_dir)
    # A small energy meter at unit 1: voltage (0.1 V), current (0.001 A), power (float32 W).
    bus.set_value(1, "holding", RegisterSpec(0, "voltage", "uint16", scale=0.1), 230.1)
    bus.set_value(1, "holding", RegisterSpec(1, "current", "uint16", scale=0.001), 1.234)
    bus.set_value(1, "holding", RegisterSpec(2, "power", "float32"), 283.9)
    return bus


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hardware_sim")
    sub = parser.add_subparsers(dest="command", required=True)
    ser = sub.add_parser("serial", help="serve one simulated serial device on a pty")
    ser.add_argument("--device", choices=["gps", "lines", "modbus"], required=True)
    ser.add_argument("--rate", type=float, default=1.0, help="lines/epochs per second")
    ser.add_argument("--talker", default="GP", help="NMEA talker id (gps)")
    ser.add_argument("--format", choices=["json", "csv", "kv"], default="kv", help="(lines)")
    ser.add_argument("--link-dir", default=None, help="directory for the stable symlink")
    args = parser.parse_args(argv)

    done = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    dev = _serial_device(args).start()
    try:
        print(f"{args.device}: pty {dev.tty_path}", flush=True)
        print(f"{args.device}: symlink {dev.path}", flush=True)
        if args.device == "modbus":
            print("modbus: unit 1, holding registers 0 voltage(x0.1 V) 1 current(x0.001 A) "
                  "2-3 power(float32 W)", flush=True)
        print("Ctrl-C to stop", flush=True)
        done.wait()
    finally:
        dev.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
