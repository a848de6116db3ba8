"""ROHM BH1750FVI ambient light sensor.

Reference: ROHM BH1750FVI datasheet (2011.11, Rev.D). Instruction set
(p.5 "Instruction Set Architecture"), measurement modes and times
(p.5 "Measurement mode explanation": H-res 120 ms typ / 180 ms max, L-res
16 ms typ / 24 ms max), measurement sequence example (p.7: 1000_0011_1001_0000b
-> 28067 lx), MTreg sensitivity adjustment (p.11: lx = count / 1.2 · 69/MTreg,
halved again in H-resolution mode 2). Addresses p.10 (ADDR low 0x23, high 0x5C).

The chip has no ready flag: the driver waits the maximum measurement time of
the chosen mode, scaled by MTreg, then reads the two result bytes.

The catalog entry follows the driver:
`driver: bh1750` — ROHM BH1750 ambient light sensor.
The driver class above takes plain arguments; only `_make` reads the config.
"""

from __future__ import annotations

import time
from typing import Literal

from gateway.catalog.spec import ChipProbe, DeviceSpec, I2CBus, Sleep
from gateway.config.model import I2CDevice
from gateway.config.schema import Field
from gateway.config.types import I2CAddress
from gateway.drivers import read_bytes, write_bytes

DEFAULT_ADDRESS = 0x23  # ADDR <= 0.3·VCC; 0x5C with ADDR high

# Instruction set (opcodes)
POWER_DOWN = 0x00
POWER_ON = 0x01
RESET = 0x07  # clears the data register; only accepted while powered on
ONE_TIME_H_RES = 0x20
ONE_TIME_H_RES2 = 0x21
ONE_TIME_L_RES = 0x23
MTREG_HIGH = 0x40  # 01000_MT[7:5]
MTREG_LOW = 0x60  # 011_MT[4:0]

MTREG_DEFAULT = 69
MTREG_MIN, MTREG_MAX = 31, 254

Mode = Literal["high", "high2", "low"]
OPCODE: dict[str, int] = {"high": ONE_TIME_H_RES, "high2": ONE_TIME_H_RES2, "low": ONE_TIME_L_RES}
#: Maximum measurement time at the default MTreg (69), seconds.
MAX_TIME_S: dict[str, float] = {"high": 0.180, "high2": 0.180, "low": 0.024}


def counts_to_lux(count: int, mode: str = "high", mtreg: int = MTREG_DEFAULT) -> float:
    """Result register -> lux (p.7 and p.11): count / 1.2 · (69 / MTreg), / 2 in mode 2."""
    lux = count / 1.2 * (MTREG_DEFAULT / mtreg)
    return lux / 2 if mode == "high2" else lux


class BH1750:
    """One-time measurements: power on, one measurement command, wait, one 2-byte read."""

    def __init__(self, bus: I2CBus, address: int = DEFAULT_ADDRESS, *, mode: Mode = "high",
                 mtreg: int = MTREG_DEFAULT, sleep: Sleep = time.sleep) -> None:
        if mode not in OPCODE:
            raise ValueError(f"mode must be high, high2 or low, not {mode!r}")
        if not MTREG_MIN <= mtreg <= MTREG_MAX:
            raise ValueError(f"mtreg must be {MTREG_MIN}..{MTREG_MAX}, not {mtreg}")
        self.bus = bus
        self.address = address
        self.mode = mode
        self.mtreg = mtreg
        self._sleep = sleep
        self._command(POWER_ON)
        # MTreg is written in two halves (p.11) and kept until power-down of VCC.
        self._command(MTREG_HIGH | (mtreg >> 5))
        self._command(MTREG_LOW | (mtreg & 0x1F))

    def _command(self, opcode: int) -> None:
        write_bytes(self.bus, self.address, [opcode])

    @property
    def measurement_time_s(self) -> float:
        return MAX_TIME_S[self.mode] * self.mtreg / MTREG_DEFAULT

    def read(self) -> dict[str, float]:
        # One-time modes drop back to power-down after each measurement (p.5).
        self._command(POWER_ON)
        self._command(OPCODE[self.mode])
        self._sleep(self.measurement_time_s)
        msb, lsb = read_bytes(self.bus, self.address, 2)
        return {"illuminance_lx": round(counts_to_lux((msb << 8) | lsb, self.mode, self.mtreg), 2)}


# -- the catalog entry ------------------------------------------------------------

class BH1750Config(I2CDevice):
    driver: Literal["bh1750"]
    address: I2CAddress = Field(default=0x23, description="0x23 (ADDR low) or 0x5C (ADDR high).")
    mode: Literal["high", "high2", "low"] = Field(
        default="high",
        description="Resolution: high (1 lx), high2 (0.5 lx), low (4 lx, 24 ms instead of 180 ms).",
    )
    mtreg: int = Field(
        default=69, ge=31, le=254,
        description="Measurement time register: higher = more sensitive and slower (69 default).",
    )


def _make(bus: I2CBus, cfg: BH1750Config) -> BH1750:
    return BH1750(bus, cfg.address, mode=cfg.mode, mtreg=cfg.mtreg)


def _resolution(cfg: BH1750Config) -> dict[str, float]:
    # One count (low resolution mode steps by 4 counts).
    return {"illuminance_lx": counts_to_lux(4 if cfg.mode == "low" else 1, cfg.mode, cfg.mtreg)}


SPEC = DeviceSpec(
    driver="bh1750",
    summary="ROHM BH1750 ambient light",
    kind="i2c",
    config=BH1750Config,
    quantities=("illuminance_lx",),
    make_driver=_make,
    probe=ChipProbe(addresses=(0x23, 0x5C)),  # no id register
    reference="ROHM BH1750FVI datasheet",
    manufacturer="ROHM",
    model="BH1750",
    resolution=_resolution,
)
