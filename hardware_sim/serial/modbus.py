"""A Modbus RTU slave (one or several unit ids sharing one RS-485 line) on a pty.

Hand-rolled for the simulator only: pymodbus' server opens a serial port by
path, but the slave side of our pty belongs to the gateway, and the simulator
only holds the master fd. It answers function 03 (read holding registers) and
04 (read input registers) per Modbus Application Protocol v1.1b3 §6.3/§6.4,
with exception 01 (illegal function) and 02 (illegal data address), and frames
checked with CRC-16/MODBUS (Modbus over Serial Line v1.02 §6.2.2).

Faults: `silent` (no answers: a timeout), `bad_crc_every` (every Nth answer
has a corrupted CRC), unplug/replug from PtyDevice.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

from gateway.protocols.modbus import RegisterSpec, crc_ok, encode_value, with_crc
from hardware_sim.serial.pty import PtyDevice

Table = Literal["holding", "input"]
_FUNCTIONS: dict[int, Table] = {3: "holding", 4: "input"}
#: A request split by more than this silence is discarded (RTU's 3.5-character gap, generously).
_GAP_S = 0.05


class ModbusSlaveSim(PtyDevice):
    def __init__(self, name: str, bad_crc_every: int = 0, link_dir: str | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(name, rate_hz=None, link_dir=link_dir, clock=clock)
        self.units: dict[int, dict[Table, dict[int, int]]] = {}
        self.bad_crc_every = bad_crc_every
        #: The configured `port:` this line stands in for (devices on it share this sim).
        self.config_port: str | None = None
        #: Devices served by this line; each one's close() releases one use.
        self.users = 0
        self.requests = 0
        self.answers = 0
        self._buf = bytearray()
        self._last_rx = 0.0

    def close(self) -> None:
        """Release one user; the pty closes when the last device on the line is gone."""
        self.users -= 1
        if self.users <= 0:
            super().close()

    def add_unit(self, unit: int) -> dict[Table, dict[int, int]]:
        return self.units.setdefault(unit, {"holding": {}, "input": {}})

    def set_registers(self, unit: int, table: Table, address: int, words: list[int]) -> None:
        regs = self.add_unit(unit)[table]
        for i, w in enumerate(words):
            regs[address + i] = w & 0xFFFF

    def set_value(self, unit: int, table: Table, spec: RegisterSpec, value: float) -> None:
        """Store a physical value the way the register map decodes it: (value - offset) / scale."""
        raw = (value - spec.offset) / spec.scale
        if spec.type != "float32":
            raw = round(raw)
        self.set_registers(unit, table, spec.address, encode_value(raw, spec.type, spec.word_order))

    def on_input(self, data: bytes) -> None:
        now = time.monotonic()
        if self._buf and now - self._last_rx > _GAP_S:
            self._count("discarded_partial")
            self._buf.clear()
        self._last_rx = now
        self._buf += data
        while len(self._buf) >= 8:
            frame = bytes(self._buf[:8])
            if not crc_ok(frame):
                self._count("bad_request_crc")
                del self._buf[:1]  # resynchronise byte by byte
                continue
            del self._buf[:8]
            self._handle(frame)

    def _handle(self, frame: bytes) -> None:
        self.requests += 1
        unit, fc = frame[0], frame[1]
        if unit == 0 or unit not in self.units or self.silent:
            return  # broadcast, another slave's address, or a dead slave: no reply
        table = _FUNCTIONS.get(fc)
        if table is None:
            self._reply(bytes([unit, fc | 0x80, 0x01]))
            return
        address = int.from_bytes(frame[2:4], "big")
        count = int.from_bytes(frame[4:6], "big")
        if not 1 <= count <= 125:
            self._reply(bytes([unit, fc | 0x80, 0x03]))
            return
        regs = self.units[unit][table]
        try:
            words = [regs[a] for a in range(address, address + count)]
        except KeyError:
            self._reply(bytes([unit, fc | 0x80, 0x02]))
            return
        body = b"".join(w.to_bytes(2, "big") for w in words)
        self._reply(bytes([unit, fc, len(body)]) + body)

    def _reply(self, pdu: bytes) -> None:
        self.answers += 1
        frame = with_crc(pdu)
        if self.bad_crc_every and self.answers % self.bad_crc_every == 0:
            frame = frame[:-1] + bytes([frame[-1] ^ 0xFF])
            self._count("bad_reply_crc")
        self.write(frame)
