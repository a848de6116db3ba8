"""Texas Instruments INA219 current, bus voltage and power monitor.

Reference: TI SBOS448 (INA219 datasheet, rev G). Register map §8.6 (config
00h, shunt voltage 01h, bus voltage 02h, power 03h, current 04h, calibration
05h), config fields §8.6.2.1 (BRNG, PG, BADC, SADC, MODE), shunt voltage
register §8.6.3.1 (10 µV LSB, two's complement), bus voltage register
§8.6.3.2 (bits 15:3, 4 mV LSB; CNVR bit 1, OVF bit 0), calibration
§8.5.1 Equations 1-5:
  Current_LSB = max expected current / 2^15;  Cal = trunc(0.04096 / (Current_LSB · R_shunt))
  Power_LSB = 20 · Current_LSB;  Current = Shunt · Cal / 4096;  Power = Current · Bus / 5000
Each `read()` triggers one shunt + bus conversion (MODE 011), waits for CNVR,
then reads the four result registers of that conversion.

The catalog entry follows the driver:
`driver: ina219` — TI INA219 current, bus voltage and power monitor.
The driver class above takes plain arguments; only `_make` reads the config.
"""

from __future__ import annotations

import time
from typing import Literal

from gateway.catalog.spec import ChipProbe, DeviceSpec, I2CBus, Sleep
from gateway.config.model import I2CDevice
from gateway.config.schema import Field, field_validator
from gateway.config.types import I2CAddress
from gateway.drivers import ConversionTimeout, DriverError, s16

DEFAULT_ADDRESS = 0x40  # A0, A1 to GND; 0x40..0x4F by A0/A1 (address pins table)

REG_CONFIG = 0x00
REG_SHUNT_VOLTAGE = 0x01
REG_BUS_VOLTAGE = 0x02
REG_POWER = 0x03
REG_CURRENT = 0x04
REG_CALIBRATION = 0x05

CONFIG_RESET = 0x8000
BRNG = {16: 0, 32: 1}  # bus voltage range, volts
PG = {0.04: 0b00, 0.08: 0b01, 0.16: 0b10, 0.32: 0b11}  # shunt full scale, volts
ADC_12BIT = 0b0011  # 12-bit, 532 µs per conversion
MODE_SHUNT_BUS_TRIGGERED = 0b011
BUS_CNVR = 0x0002
BUS_OVF = 0x0001
SHUNT_LSB_V = 10e-6
BUS_LSB_V = 0.004


def calibration(max_current_a: float, shunt_ohms: float) -> tuple[int, float]:
    """§8.5.1 Equations 1-2: (Cal register value, Current_LSB in A)."""
    current_lsb = max_current_a / 32768
    cal = int(0.04096 / (current_lsb * shunt_ohms))
    if not 0 < cal <= 0xFFFE:
        raise ValueError(
            f"max_current_a={max_current_a} with shunt_ohms={shunt_ohms} gives calibration {cal}, "
            "outside 1..65534"
        )
    return cal & 0xFFFE, current_lsb  # bit 0 of the calibration register is not used


class INA219:
    def __init__(self, bus: I2CBus, address: int = DEFAULT_ADDRESS, *, shunt_ohms: float = 0.1,
                 max_current_a: float = 3.2, bus_range_v: int = 32, shunt_range_v: float = 0.32,
                 sleep: Sleep = time.sleep) -> None:
        if bus_range_v not in BRNG:
            raise ValueError(f"bus_range_v must be 16 or 32, not {bus_range_v}")
        if shunt_range_v not in PG:
            raise ValueError(f"shunt_range_v must be one of {sorted(PG)}, not {shunt_range_v}")
        self.bus = bus
        self.address = address
        self.cal, self.current_lsb = calibration(max_current_a, shunt_ohms)
        self.power_lsb = 20 * self.current_lsb  # Equation 3
        self._sleep = sleep
        self.config = (
            (BRNG[bus_range_v] << 13) | (PG[shunt_range_v] << 11) | (ADC_12BIT << 7)
            | (ADC_12BIT << 3) | MODE_SHUNT_BUS_TRIGGERED
        )
        self._write(REG_CALIBRATION, self.cal)
        if self._read(REG_CALIBRATION) != self.cal:
            raise DriverError(f"INA219 at 0x{address:02x}: calibration register did not keep its value")

    def _read(self, reg: int) -> int:
        msb, lsb = self.bus.read_i2c_block_data(self.address, reg, 2)  # MSB first
        return (int(msb) << 8) | int(lsb)

    def _write(self, reg: int, value: int) -> None:
        self.bus.write_i2c_block_data(self.address, reg, [(value >> 8) & 0xFF, value & 0xFF])

    def read(self) -> dict[str, float]:
        self._write(REG_CONFIG, self.config)  # writing MODE 011 triggers one conversion
        self._sleep(0.0011)  # 2 × 532 µs at 12 bits (§8.6.2.1 ADC settings table)
        for _ in range(4):
            bus_reg = self._read(REG_BUS_VOLTAGE)
            if bus_reg & BUS_CNVR:
                break
            self._sleep(0.0005)
        else:
            raise ConversionTimeout(f"INA219 at 0x{self.address:02x}: conversion not ready (CNVR)")
        if bus_reg & BUS_OVF:
            raise DriverError(f"INA219 at 0x{self.address:02x}: math overflow (OVF), current out of range")
        shunt = s16(self._read(REG_SHUNT_VOLTAGE))
        current = s16(self._read(REG_CURRENT))
        power = self._read(REG_POWER)  # read last: it clears CNVR
        return {
            "bus_voltage_v": round((bus_reg >> 3) * BUS_LSB_V, 3),
            "shunt_voltage_v": round(shunt * SHUNT_LSB_V, 6),
            "current_a": round(current * self.current_lsb, 6),
            "power_w": round(power * self.power_lsb, 6),
        }


# -- the catalog entry ------------------------------------------------------------

class INA219Config(I2CDevice):
    driver: Literal["ina219"]
    address: I2CAddress = Field(default=0x40, description="0x40..0x4F (A0/A1 pins).")
    shunt_ohms: float = Field(default=0.1, gt=0, le=10, description="Shunt resistor in ohms.")
    max_current_a: float = Field(
        default=3.2, gt=0, le=100, description="Largest expected current; sets the current resolution."
    )
    bus_range_v: Literal[16, 32] = Field(default=32, description="Bus voltage range.")
    shunt_range_v: float = Field(
        default=0.32, description="Shunt voltage full scale (PGA): 0.04, 0.08, 0.16 or 0.32 V."
    )

    @field_validator("shunt_range_v")
    @classmethod
    def _pga(cls, v: float) -> float:
        if v not in (0.04, 0.08, 0.16, 0.32):
            raise ValueError("must be 0.04, 0.08, 0.16 or 0.32 (volts)")
        return v


def _make(bus: I2CBus, cfg: INA219Config) -> INA219:
    return INA219(bus, cfg.address, shunt_ohms=cfg.shunt_ohms, max_current_a=cfg.max_current_a,
                  bus_range_v=cfg.bus_range_v, shunt_range_v=cfg.shunt_range_v)


def _resolution(cfg: INA219Config) -> dict[str, float]:
    _, current_lsb = calibration(cfg.max_current_a, cfg.shunt_ohms)
    return {"bus_voltage_v": BUS_LSB_V, "shunt_voltage_v": SHUNT_LSB_V,
            "current_a": current_lsb, "power_w": 20 * current_lsb}  # SBOS448 §8.5.1


SPEC = DeviceSpec(
    driver="ina219",
    summary="TI INA219 current, voltage and power",
    kind="i2c",
    config=INA219Config,
    quantities=("bus_voltage_v", "shunt_voltage_v", "current_a", "power_w"),
    make_driver=_make,
    probe=ChipProbe(addresses=tuple(range(0x40, 0x50))),
    reference="TI SBOS448",
    manufacturer="Texas Instruments",
    model="INA219",
    resolution=_resolution,
)
