"""A Modbus RTU slave (one or several unit ids sharing one RS-485 line) on a pty.

Hand-rolled for the simulator only: pymodbus' server opens a serial port by
path, but the slave side of our pty belongs to the gateway, and the simulator
only holds the master fd. It answers function 03 (read holding registers) and
04 (read input registers) per Modbus Application Protocol v1.1b3 §6.3/§6.4,
with exception 01 (illegal function) and 02 (illegal data address), and frames
checked with CRC-16/MODBUS (Modbus over Serial Line v1.02 §6.2.2). Writes keep
their state so a test can read back what was written: 01 (read coils, §6.1),
05 (write single coil, §6.5: 0xFF00 = ON, 0x0000 = OFF, anything else exception
03), 06 (write single register, §6.6) and 16 (write multiple registers, §6.12).

The wire log (`wire`, when `log_wire` is set) records every chunk read from the
line and every reply written, in order; with `reply_delay` the slave takes that
long to answer (as a slow device does) while still listening, and counts a byte
that arrives before it answered in `overlaps`: a master that talks before the
reply came has interleaved two requests on the wire.

Faults: `silent` (no answers: a timeout), `bad_crc_every` (every Nth answer
has a corrupted CRC), unplug/replug from PtyDevice.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Literal

from gateway.protocols.modbus import RegisterSpec, crc_ok, encode_value, with_crc
from hardware_sim.serial.pty import PtyDevice

Table = Literal["holding", "input", "coils"]
_FUNCTIONS: dict[int, Table] = {3: "holding", 4: "input"}
_WRITES = (5, 6, 16)
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
        #: Seconds before each reply (0: at once).
        self.reply_delay = 0.0
        self.log_wire = False
        #: ("rx" | "tx", time.monotonic(), bytes), in the order they happened on the line.
        self.wire: list[tuple[str, float, bytes]] = []
        #: Bytes that arrived while a reply was still due (see the module docstring).
        self.overlaps = 0
        self._replying = threading.Event()
        #: Write requests (05/06/16) received, whole frames (for "never retried" tests).
        self.writes: list[bytes] = []

    def close(self) -> None:
        """Release one user; the pty closes when the last device on the line is gone."""
        self.users -= 1
        if self.users <= 0:
            super().close()

    def add_unit(self, unit: int) -> dict[Table, dict[int, int]]:
        return self.units.setdefault(unit, {"holding": {}, "input": {}, "coils": {}})

    def coil(self, unit: int, address: int) -> bool:
        return bool(self.add_unit(unit)["coils"].get(address, 0))

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
        if self.log_wire:
            self.wire.append(("rx", now, data))
        if self._replying.is_set():
            self.overlaps += 1
        if self._buf and now - self._last_rx > _GAP_S:
            self._count("discarded_partial")
            self._buf.clear()
        self._last_rx = now
        self._buf += data
        while len(self._buf) >= 8:
            # Function 16 carries its byte count at offset 6 (§6.12); the others are 8 bytes.
            size = 9 + self._buf[6] if self._buf[1] == 16 else 8
            if len(self._buf) < size:
                break
            frame = bytes(self._buf[:size])
            if not crc_ok(frame):
                self._count("bad_request_crc")
                del self._buf[:1]  # resynchronise byte by byte
                continue
            del self._buf[:size]
            self._handle(frame)

    def _handle(self, frame: bytes) -> None:
        self.requests += 1
        unit, fc = frame[0], frame[1]
        if fc in _WRITES and unit in self.units:
            self.writes.append(frame)
        if unit == 0 or unit not in self.units or self.silent:
            return  # broadcast, another slave's address, or a dead slave: no reply
        address = int.from_bytes(frame[2:4], "big")
        word = int.from_bytes(frame[4:6], "big")
        tables = self.units[unit]
        if fc == 5:
            if word not in (0xFF00, 0x0000):
                self._reply(bytes([unit, fc | 0x80, 0x03]))
                return
            tables["coils"][address] = 1 if word == 0xFF00 else 0
            self._reply(frame[:6])  # the normal response echoes the request (§6.5)
            return
        if fc == 6:
            tables["holding"][address] = word
            self._reply(frame[:6])
            return
        if fc == 16:
            count = word
            if not 1 <= count <= 123 or frame[6] != 2 * count:
                self._reply(bytes([unit, fc | 0x80, 0x03]))
                return
            for i in range(count):
                tables["holding"][address + i] = int.from_bytes(frame[7 + 2 * i:9 + 2 * i], "big")
            self._reply(frame[:6])
            return
        if fc == 1:
            count = word
            if not 1 <= count <= 2000:
                self._reply(bytes([unit, fc | 0x80, 0x03]))
                return
            bits = [tables["coils"].get(a, 0) for a in range(address, address + count)]
            body = bytes(sum(b << i for i, b in enumerate(bits[n:n + 8]))
                         for n in range(0, count, 8))
            self._reply(bytes([unit, fc, len(body)]) + body)
            return
        table = _FUNCTIONS.get(fc)
        if table is None:
            self._reply(bytes([unit, fc | 0x80, 0x01]))
            return
        count = word
        if not 1 <= count <= 125:
            self._reply(bytes([unit, fc | 0x80, 0x03]))
            return
        regs = tables[table]
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
        if self.reply_delay <= 0:
            self._send(frame)
            return
        # Answer later from a timer, so this thread keeps reading the line meanwhile.
        self._replying.set()
        timer = threading.Timer(self.reply_delay, self._send, (frame,))
        timer.name = f"sim-modbus-reply-{self.name}"
        timer.daemon = True
        timer.start()

    def _send(self, frame: bytes) -> None:
        if self.log_wire:
            self.wire.append(("tx", time.monotonic(), frame))
        self._replying.clear()
        self.write(frame)
