"""AHT20 model: status byte, trigger command, 20-bit packed values and a CRC (AHT20 manual §5-6).

Encodes with the inverse of §6: S_RH = RH/100·2^20, S_T = (T + 50)/200·2^20.
"""

from __future__ import annotations

from typing import Any

from hardware_sim.i2c import SimChip, crc8_0x31, nack


def encode(temperature_c: float, humidity_pct: float) -> tuple[int, int]:
    s_rh = min(2**20 - 1, round(min(100.0, max(0.0, humidity_pct)) / 100.0 * 2**20))
    s_t = min(2**20 - 1, round((min(85.0, max(-40.0, temperature_c)) + 50.0) / 200.0 * 2**20))
    return s_rh, s_t


class AHT20Chip(SimChip):
    DEFAULTS = {"temperature_c": 22.0, "humidity_pct": 50.0}

    def __init__(self, address: int, *, calibrated: bool = True, **kwargs: Any) -> None:
        super().__init__(address, **kwargs)
        self.calibrated = calibrated
        self.busy = False
        self.frame = bytes(6)
        self.measurements = 0
        self.inits = 0

    @property
    def status(self) -> int:
        return (0x80 if self.busy else 0) | (0x08 if self.calibrated else 0) | 0x10

    def write(self, data: bytes) -> None:
        if not data:
            return
        cmd = data[0]
        if cmd == 0x71:
            return  # the next read starts with the status byte anyway
        if cmd == 0xBE and data[1:3] == b"\x08\x00":
            self.calibrated = True
            self.inits += 1
        elif cmd == 0xAC and data[1:3] == b"\x33\x00":
            self.measurements += 1
            self.busy = self.faults.slow_conversion
            v = self.values_now()
            s_rh, s_t = encode(v["temperature_c"], v["humidity_pct"])
            self.frame = bytes([(s_rh >> 12) & 0xFF, (s_rh >> 4) & 0xFF,
                                ((s_rh & 0x0F) << 4) | (s_t >> 16), (s_t >> 8) & 0xFF, s_t & 0xFF])
        elif cmd == 0xBA:
            self.busy = False
        else:
            raise nack(self.address)

    def read(self, n: int) -> bytes:
        body = bytes([self.status]) + self.frame
        crc = crc8_0x31(body)
        if self.faults.corrupt_crc:
            crc ^= 0xFF
        return (body + bytes([crc]) + b"\xff" * n)[:n]


MODEL = AHT20Chip
