"""SHT4x model: one-byte commands, CRC-protected words (Sensirion Datasheet SHT4x §4).

Encodes with the inverse of §4.6: S_T = (T + 45)·65535/175, S_RH = (RH + 6)·65535/125.
"""

from __future__ import annotations

from typing import Any

from hardware_sim.i2c import SimChip, nack, sensirion_words

MEASURE = {0xFD, 0xF6, 0xE0}
HEATER = {0x39, 0x32, 0x2F, 0x24, 0x1E, 0x15}  # measure with heater (also measurements)
SERIAL = 0x89
SOFT_RESET = 0x94


def encode(temperature_c: float, humidity_pct: float) -> tuple[int, int]:
    s_t = round((min(125.0, max(-40.0, temperature_c)) + 45.0) * 65535.0 / 175.0)
    s_rh = round((min(100.0, max(0.0, humidity_pct)) + 6.0) * 65535.0 / 125.0)
    return s_t, s_rh


class SHT4xChip(SimChip):
    DEFAULTS = {"temperature_c": 22.0, "humidity_pct": 50.0}

    def __init__(self, address: int, *, serial_number: int = 0x0F1E2D3C, **kwargs: Any) -> None:
        super().__init__(address, **kwargs)
        self.serial_number = serial_number
        self._pending: bytes | None = None
        self._measuring = False
        self.measurements = 0

    def write(self, data: bytes) -> None:
        if len(data) != 1:
            raise nack(self.address)
        cmd = data[0]
        self._measuring = cmd in MEASURE or cmd in HEATER
        corrupt = self.faults.corrupt_crc
        if self._measuring:
            self.measurements += 1
            v = self.values_now()
            self._pending = sensirion_words(encode(v["temperature_c"], v["humidity_pct"]), corrupt)
        elif cmd == SERIAL:
            sn = self.serial_number
            self._pending = sensirion_words([sn >> 16, sn & 0xFFFF], corrupt)
        elif cmd == SOFT_RESET:
            self._pending = None
        else:
            raise nack(self.address)

    def read(self, n: int) -> bytes:
        if self._pending is None or (self._measuring and self.faults.slow_conversion):
            raise nack(self.address)  # nothing to send, or still measuring
        data, self._pending = self._pending, None
        return (data + b"\xff" * n)[:n]


MODEL = SHT4xChip
