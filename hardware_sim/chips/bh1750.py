"""BH1750 model: one-byte opcodes, MTreg, power state, big-endian result (ROHM BH1750FVI).

Encodes lux as count = lux · 1.2 · MTreg/69 (·2 in H-resolution mode 2), a
16-bit count that saturates at 65535. The chip has no ready flag, so the
`slow_conversion` fault leaves the previous result in the data register, as a
read too early would on real hardware.
"""

from __future__ import annotations

from typing import Any

from hardware_sim.i2c import SimChip, nack

H_RES, H_RES2, L_RES = 0, 1, 3  # low two bits of the measurement opcodes


def encode(lux: float, mode_bits: int, mtreg: int) -> int:
    count = max(0.0, lux) * 1.2 * mtreg / 69
    if mode_bits == H_RES2:
        count *= 2
    code = min(65535, round(count))
    if mode_bits == L_RES:
        code &= ~0x3  # L-resolution: 4 lx steps, low bits not significant (p.5)
    return code


class BH1750Chip(SimChip):
    DEFAULTS = {"illuminance_lx": 350.0}

    def __init__(self, address: int, **kwargs: Any) -> None:
        super().__init__(address, **kwargs)
        self.powered = False
        self.mtreg = 69
        self.data = 0
        self.measurements = 0
        self.commands: list[int] = []

    def write(self, data: bytes) -> None:
        for op in data:
            self.commands.append(op)
            self._opcode(op)

    def _opcode(self, op: int) -> None:
        if op == 0x00:
            self.powered = False
        elif op == 0x01:
            self.powered = True
        elif op == 0x07:
            if self.powered:
                self.data = 0
        elif op & 0xF8 == 0x40:
            self.mtreg = (self.mtreg & 0x1F) | ((op & 0x07) << 5)
        elif op & 0xE0 == 0x60:
            self.mtreg = (self.mtreg & 0xE0) | (op & 0x1F)
        elif op in (0x10, 0x11, 0x13, 0x20, 0x21, 0x23):
            if not self.powered:
                return  # measurement commands need power-on first (state diagram p.5)
            self.measurements += 1
            if not self.faults.slow_conversion:
                self.data = encode(self.values_now()["illuminance_lx"], op & 0x03, self.mtreg)
            if op & 0x20:
                self.powered = False  # one-time modes power down after measuring
        else:
            raise nack(self.address)

    def read(self, n: int) -> bytes:
        word = self.data.to_bytes(2, "big")
        return (word + b"\xff" * n)[:n]


MODEL = BH1750Chip
