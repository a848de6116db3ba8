"""SHT3x model: 16-bit commands, single-shot measurements, CRC-protected words.

Encodes with the inverse of the datasheet conversion (§4.13):
S_T = (T + 45)·65535/175, S_RH = RH·65535/100, then CRC-8 per word (§4.12).
"""

from __future__ import annotations

from typing import Any

from hardware_sim.i2c import SimChip, nack, sensirion_words

SINGLE_SHOT = {0x2400, 0x240B, 0x2416, 0x2C06, 0x2C0D, 0x2C10}
READ_STATUS = 0xF32D
CLEAR_STATUS = 0x3041
SOFT_RESET = 0x30A2


def encode(temperature_c: float, humidity_pct: float) -> tuple[int, int]:
    s_t = round((min(130.0, max(-45.0, temperature_c)) + 45.0) * 65535.0 / 175.0)
    s_rh = round(min(100.0, max(0.0, humidity_pct)) * 65535.0 / 100.0)
    return s_t, s_rh


class SHT3xChip(SimChip):
    DEFAULTS = {"temperature_c": 22.0, "humidity_pct": 50.0}

    def __init__(self, address: int, **kwargs: Any) -> None:
        super().__init__(address, **kwargs)
        self.status = 0x8010  # alert pending + reset detected after power-up (§4.11 Table 18)
        self._pending: bytes | None = None  # what the next read returns
        self._measuring = False
        self.measurements = 0
        self.commands: list[int] = []

    def write(self, data: bytes) -> None:
        if len(data) < 2:
            raise nack(self.address)  # commands are 16 bits; a lone byte is not acknowledged
        cmd = (data[0] << 8) | data[1]
        self.commands.append(cmd)
        self._measuring = cmd in SINGLE_SHOT
        if cmd in SINGLE_SHOT:
            self.measurements += 1
            v = self.values_now()
            self._pending = sensirion_words(
                encode(v["temperature_c"], v["humidity_pct"]), corrupt=self.faults.corrupt_crc
            )
        elif cmd == READ_STATUS:
            self._pending = sensirion_words([self.status], corrupt=self.faults.corrupt_crc)
        elif cmd == CLEAR_STATUS:
            self.status &= ~0x8C13 & 0xFFFF
            self._pending = None
        elif cmd == SOFT_RESET:
            self._pending = None
        else:
            raise nack(self.address)  # unknown commands are not acknowledged

    def read(self, n: int) -> bytes:
        # §4.4: no data (nothing measured, or still measuring) -> read header NACKed.
        if self._pending is None or (self._measuring and self.faults.slow_conversion):
            raise nack(self.address)
        data, self._pending = self._pending, None
        return (data + b"\xff" * n)[:n]


MODEL = SHT3xChip
