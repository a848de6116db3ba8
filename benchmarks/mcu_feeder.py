"""A microcontroller on USB serial, streaming readings to the gateway.

Usage: mcu_feeder.py LINK [RATE]
Opens a pseudo-terminal, points the symlink LINK at its device, and writes
key=value lines to it at RATE lines/s (0 or absent: as fast as the reader
takes them). A new rate can be sent as a line on stdin at any time. Writes
block when the reader falls behind, as USB CDC flow control makes a real
microcontroller wait, so nothing is lost on the wire. Runs until killed or
stdin closes. The simulation runs in this process, as a real device runs
outside the gateway's.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import tty

BLOCK = 32  # lines per write


class Pace:
    def __init__(self, rate: float) -> None:
        self.lock = threading.Lock()
        self.set(rate, 0)

    def set(self, rate: float, sent: int) -> None:
        with self.lock:
            self.rate, self.t0, self.base = rate, time.monotonic(), sent

    def delay(self, sent: int) -> float:
        with self.lock:
            if not self.rate:
                return 0.0
            return self.t0 + (sent - self.base) / self.rate - time.monotonic()


def main() -> int:
    link = sys.argv[1]
    pace = Pace(float(sys.argv[2]) if len(sys.argv) > 2 else 0.0)
    master, slave = os.openpty()
    tty.setraw(slave)  # no echo, no line editing: bytes pass as they are
    if os.path.lexists(link):
        os.unlink(link)
    os.symlink(os.ttyname(slave), link)
    sent = 0
    done = threading.Event()

    def control() -> None:
        for line in sys.stdin:
            pace.set(float(line), sent)
        done.set()

    threading.Thread(target=control, name="feeder-control", daemon=True).start()
    while not done.is_set():
        block = "".join(
            f"temp={20 + (n % 1000) / 100:.2f},soil={30 + (n % 500) / 10:.1f}\r\n"
            for n in range(sent, sent + BLOCK)
        ).encode()
        os.write(master, block)
        sent += BLOCK
        delay = pace.delay(sent)
        if delay > 0:
            time.sleep(delay)
    return 0


if __name__ == "__main__":
    sys.exit(main())
