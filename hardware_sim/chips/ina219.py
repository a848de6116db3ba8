"""INA219 model: shunt and bus ADCs plus the chip's own current/power arithmetic (TI SBOS448).

The physical inputs are the bus voltage and the load current; with the shunt
resistance (option `shunt_ohms`) the model derives the shunt voltage code
(10 µV LSB), the bus code (4 mV LSB, bits 15:3), then the current and power
registers exactly as §8.5.1 says the chip computes them from the calibration
register: Current = Shunt·Cal/4096, Power = Current·Bus/5000.
"""

from __future__ import annotations

from typing import Any

from hardware_sim.i2c import SimChip, nack

PG_LIMIT = {0: 4000, 1: 8000, 2: 16000, 3: 32000}  # shunt full scale in 10 µV codes


def _trunc_div(n: int, d: int) -> int:
    q = abs(n) // d
    return q if n >= 0 else -q


class INA219Chip(SimChip):
    DEFAULTS = {"bus_voltage_v": 5.0, "current_a": 0.25}

    def __init__(self, address: int, *, shunt_ohms: float = 0.1, **kwargs: Any) -> None:
        super().__init__(address, **kwargs)
        self.shunt_ohms = shunt_ohms
        self.regs = {0: 0x399F, 1: 0, 2: 0, 3: 0, 4: 0, 5: 0}  # power-on values (§8.6)
        self.pointer = 0
        self.conversions = 0

    def write(self, data: bytes) -> None:
        if not data:
            return
        if data[0] > 5:
            raise nack(self.address)
        self.pointer = data[0]
        if len(data) < 3 or self.pointer in (1, 2, 3, 4):  # result registers are read-only
            return
        value = (data[1] << 8) | data[2]
        if self.pointer == 0:
            if value & 0x8000:  # RST: back to power-on values
                self.regs = {0: 0x399F, 1: 0, 2: 0, 3: 0, 4: 0, 5: 0}
                return
            self.regs[0] = value
            if value & 0x3 and not value & 0x4:  # a triggered mode: one conversion now
                self._convert()
        else:
            self.regs[5] = value & 0xFFFE

    def _convert(self) -> None:
        self.conversions += 1
        v = self.values_now()
        pg = (self.regs[0] >> 11) & 0x3
        limit = PG_LIMIT[pg]
        shunt = max(-limit, min(limit, round(v["current_a"] * self.shunt_ohms / 10e-6)))
        bus = max(0, min(8191, round(v["bus_voltage_v"] / 0.004)))
        cal = self.regs[5]
        current = _trunc_div(shunt * cal, 4096)
        overflow = not -32768 <= current <= 32767
        power = abs(current) * bus // 5000
        self.regs[1] = shunt & 0xFFFF
        self.regs[4] = current & 0xFFFF
        self.regs[3] = min(power, 0xFFFF)
        cnvr = 0 if self.faults.slow_conversion else 0x2
        self.regs[2] = (bus << 3) | cnvr | (1 if overflow else 0)

    def read(self, n: int) -> bytes:
        if self.pointer in (1, 2) and self.regs[0] & 0x4:  # continuous modes: fresh results
            self._convert()
        word = self.regs[self.pointer].to_bytes(2, "big")
        if self.pointer == 3:
            self.regs[2] &= ~0x2  # reading power clears CNVR (§8.6.3.2)
        return (word * ((n + 1) // 2))[:n]


MODEL = INA219Chip
