"""A microcontroller printing one record per line (json, csv or key=value).

sim settings (all optional):
  rate_hz: 1                    lines per second
  values: {temp: 21.5, ...}     pinned values by field name; others follow a slow sine
  bad_every: 0                  every Nth line is garbage text (0: never)
  reply: ok                     to each command line received: "OK <line>" (ok), or nothing (none)

Command lines the gateway writes (serial_line outputs) are kept in `received`.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

from hardware_sim.serial.pty import PtyDevice

DEFAULT_FIELDS: tuple[tuple[str, str], ...] = (("temperature_c", "float"), ("humidity_pct", "float"))


class LinesSim(PtyDevice):
    def __init__(self, name: str, fmt: str, fields: Sequence[tuple[str, str]] = (),
                 delimiter: str = ",", sim: dict[str, Any] | None = None,
                 clock: Callable[[], float] = time.time, link_dir: str | None = None) -> None:
        s = dict(sim or {})
        super().__init__(name, rate_hz=float(s.get("rate_hz", 1.0)), link_dir=link_dir,
                         clock=clock)
        self.format = fmt
        self.fields = tuple(fields) or DEFAULT_FIELDS
        self.delimiter = delimiter
        self.values: dict[str, Any] = dict(s.get("values") or {})
        self.bad_every = int(s.get("bad_every", 0))
        self.lines = 0
        self.reply = str(s.get("reply", "ok"))
        #: Command lines received from the gateway, in order.
        self.received: list[str] = []
        self._inbuf = bytearray()

    def value(self, field: str, ftype: str, t: float) -> Any:
        if field in self.values:
            return self.values[field]
        phase = sum(map(ord, field)) % 7
        v = 20.0 + 5.0 * math.sin(t / 60.0 + phase)
        if ftype == "int":
            return round(v)
        if ftype == "bool":
            return v > 20.0
        if ftype == "str":
            return "ok"
        return round(v, 2)

    def line_at(self, t: float) -> str:
        record = {name: self.value(name, ftype, t) for name, ftype in self.fields}
        if self.format == "json":
            return json.dumps(record, separators=(",", ":"))
        if self.format == "csv":
            return self.delimiter.join(_text(v) for v in record.values())
        return self.delimiter.join(f"{k}={_text(v)}" for k, v in record.items())

    def on_input(self, data: bytes) -> None:
        self._inbuf += data
        while True:
            end = self._inbuf.find(b"\n")
            cr = self._inbuf.find(b"\r")
            if end < 0 or (0 <= cr < end):
                end = cr
            if end < 0:
                return
            line = self._inbuf[:end].decode("utf-8", "replace")
            del self._inbuf[:end + 1]
            if not line:
                continue  # the \n of a \r\n
            self.received.append(line)
            if self.reply == "ok":
                self.write(f"OK {line}\r\n".encode())

    def tick(self) -> bytes:
        self.lines += 1
        if self.bad_every and self.lines % self.bad_every == 0:
            return b"?? brown-out reset ??\r\n"
        return (self.line_at(self.clock()) + "\r\n").encode("utf-8")


def _text(v: Any) -> str:
    if isinstance(v, bool):
        return "1" if v else "0"
    return str(v)
