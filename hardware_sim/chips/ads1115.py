"""ADS1115 model: 16-bit registers behind a pointer, single-shot conversions (TI SBAS444).

A write of the config register with OS=1 in single-shot mode latches the
selected input's voltage as a two's complement code, FS/2^15 per LSB, clipped
to 0x8000..0x7FFF (Data Format).
"""

from __future__ import annotations

from typing import Any

from hardware_sim.i2c import SimChip, nack

FULL_SCALE = (6.144, 4.096, 2.048, 1.024, 0.512, 0.256, 0.256, 0.256)  # PGA code -> volts


def encode(volts: float, full_scale: float) -> int:
    code = round(volts / full_scale * 32768)
    code = max(-32768, min(32767, code))
    return code & 0xFFFF


class ADS1115Chip(SimChip):
    DEFAULTS = {"ain0_v": 1.25, "ain1_v": 0.5, "ain2_v": 2.5, "ain3_v": 3.3}

    def __init__(self, address: int, **kwargs: Any) -> None:
        super().__init__(address, **kwargs)
        # Power-on register values (Register Map).
        self.regs = {0: 0x0000, 1: 0x8583, 2: 0x8000, 3: 0x7FFF}
        self.pointer = 0
        self.conversions = 0

    def write(self, data: bytes) -> None:
        if not data:
            return
        if data[0] > 3:
            raise nack(self.address)
        self.pointer = data[0]
        if len(data) >= 3 and self.pointer != 0:  # the conversion register is read-only
            value = (data[1] << 8) | data[2]
            if self.pointer == 1:
                self._configure(value)
            else:
                self.regs[self.pointer] = value

    def _configure(self, value: int) -> None:
        start = value & 0x8000 and value & 0x0100  # OS=1 in single-shot mode
        self.regs[1] = value & 0x7FFF
        if start:
            mux = (value >> 12) & 0x7
            pga = (value >> 9) & 0x7
            self.conversions += 1
            if mux >= 4:  # AINx vs GND
                v = self.values_now()[f"ain{mux - 4}_v"]
            else:  # differential pairs (MUX 000..011)
                pairs = {0: (0, 1), 1: (0, 3), 2: (1, 3), 3: (2, 3)}
                a, b = pairs[mux]
                now = self.values_now()
                v = now[f"ain{a}_v"] - now[f"ain{b}_v"]
            self.regs[0] = encode(v, FULL_SCALE[pga])
        if not self.faults.slow_conversion:
            self.regs[1] |= 0x8000  # conversion done: OS reads 1

    def read(self, n: int) -> bytes:
        word = self.regs[self.pointer].to_bytes(2, "big")
        return (word * ((n + 1) // 2))[:n]


MODEL = ADS1115Chip
