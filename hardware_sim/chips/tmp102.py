"""TMP102 model: temperature register in 12- or 13-bit format (TI SBOS397 §7.5)."""

from __future__ import annotations

from typing import Any

from gateway.drivers import tmp102 as ds
from hardware_sim.i2c import RegisterChip


def encode_temperature(celsius: float, extended: bool) -> bytes:
    """°C -> the two temperature register bytes (§7.5.2), two's complement."""
    lo, hi = (-55.0, 150.0) if extended else (-55.0, 127.9375)
    counts = round(min(hi, max(lo, celsius)) / ds.LSB_C)
    if extended:
        raw = ((counts & 0x1FFF) << 3) | 0x01  # bit 0 flags extended mode
    else:
        raw = (counts & 0x0FFF) << 4
    return bytes([(raw >> 8) & 0xFF, raw & 0xFF])


class TMP102Chip(RegisterChip):
    DEFAULTS = {"temperature_c": 22.5}

    def __init__(self, address: int, **kwargs: Any) -> None:
        super().__init__(address, **kwargs)
        # Power-on reset values (§7.5.3): config 0x60A0, T_LOW 75 °C, T_HIGH 80 °C.
        self.words = {ds.REG_TEMPERATURE: b"\x00\x00", ds.REG_CONFIG: b"\x60\xa0",
                      ds.REG_T_LOW: b"\x4b\x00", ds.REG_T_HIGH: b"\x50\x00"}

    # The TMP102 has 16-bit registers selected by a pointer byte, not a byte map.
    def write(self, data: bytes) -> None:
        if not data:
            return
        self.pointer = data[0] & 0x03
        if len(data) >= 3 and self.pointer != ds.REG_TEMPERATURE:
            self.words[self.pointer] = bytes(data[1:3])

    def read(self, n: int) -> bytes:
        if self.pointer == ds.REG_TEMPERATURE:
            extended = bool(self.words[ds.REG_CONFIG][1] & ds.CONFIG_EM)
            self.words[ds.REG_TEMPERATURE] = encode_temperature(
                self.values_now()["temperature_c"], extended
            )
        word = self.words[self.pointer]
        return (word * ((n + 1) // 2))[:n]


MODEL = TMP102Chip
