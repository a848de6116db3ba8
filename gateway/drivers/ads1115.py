"""Texas Instruments ADS1115 16-bit, 4-channel delta-sigma ADC.

Reference: TI SBAS444 (ADS111x datasheet), sections named as in rev. D:
"Register Map" (address pointer values; Config register fields OS, MUX, PGA,
MODE, DR, COMP_*; reset value 8583h), "Full-Scale Range (FSR) and LSB Size"
(LSB = FSR / 2^15), "Data Format" (ideal output codes: +FS·(2^15-1)/2^15 ->
7FFFh, +FS/2^15 -> 0001h, 0 -> 0, -FS/2^15 -> FFFFh, -FS -> 8000h) and
"Single-Shot Mode" (OS reads 0 while converting, 1 when done).

Each channel is one single-shot conversion against GND; `read()` converts the
configured channels one after the other and returns `ainN_v` for each.

The catalog entry follows the driver:
`driver: ads1115` — TI ADS1115 4-channel 16-bit ADC (single-ended inputs).
The driver class above takes plain arguments; only `_make` reads the config.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Literal

from gateway.catalog.spec import ChipProbe, DeviceSpec, I2CBus, Sleep
from gateway.config.model import I2CDevice
from gateway.config.schema import Field, field_validator
from gateway.config.types import I2CAddress
from gateway.drivers import ConversionTimeout, s16

DEFAULT_ADDRESS = 0x48  # ADDR to GND; 0x49 VDD, 0x4A SDA, 0x4B SCL (ADDR pin connection table)

# Register Map: address pointer values
REG_CONVERSION = 0x00
REG_CONFIG = 0x01
REG_LO_THRESH = 0x02
REG_HI_THRESH = 0x03

CONFIG_OS = 0x8000  # write: start a single conversion; read: 1 = idle (Config register)
MUX_SINGLE_ENDED = {0: 0b100, 1: 0b101, 2: 0b110, 3: 0b111}  # AINx vs GND
#: PGA full-scale range in volts -> code (bits 11:9).
PGA = {6.144: 0b000, 4.096: 0b001, 2.048: 0b010, 1.024: 0b011, 0.512: 0b100, 0.256: 0b101}
MODE_SINGLE_SHOT = 0x0100
#: Data rate in samples per second -> code (bits 7:5).
DATA_RATE = {8: 0b000, 16: 0b001, 32: 0b010, 64: 0b011, 128: 0b100, 250: 0b101, 475: 0b110,
             860: 0b111}
COMP_QUE_DISABLE = 0b11  # comparator off, ALERT/RDY high-impedance (power-on default)
CONFIG_POWER_ON = 0x8583  # reset value


def code_to_volts(code: int, full_scale: float) -> float:
    """A 16-bit two's complement conversion result -> volts (Data Format): LSB = FS / 2^15."""
    return s16(code) * full_scale / 32768.0


def config_word(channel: int, full_scale: float, data_rate: int) -> int:
    return (
        CONFIG_OS
        | (MUX_SINGLE_ENDED[channel] << 12)
        | (PGA[full_scale] << 9)
        | MODE_SINGLE_SHOT
        | (DATA_RATE[data_rate] << 5)
        | COMP_QUE_DISABLE
    )


class ADS1115:
    """Single-shot conversions of AIN0..AIN3 against GND, polled for completion."""

    def __init__(
        self,
        bus: I2CBus,
        address: int = DEFAULT_ADDRESS,
        *,
        channels: Iterable[int] = (0, 1, 2, 3),
        full_scale: float = 4.096,
        data_rate: int = 128,
        sleep: Sleep = time.sleep,
    ) -> None:
        self.channels = tuple(channels)
        if not self.channels or any(c not in MUX_SINGLE_ENDED for c in self.channels):
            raise ValueError(f"channels must be among 0..3, not {self.channels}")
        if full_scale not in PGA:
            raise ValueError(f"full_scale must be one of {sorted(PGA)} V, not {full_scale}")
        if data_rate not in DATA_RATE:
            raise ValueError(f"data_rate must be one of {sorted(DATA_RATE)}, not {data_rate}")
        self.bus = bus
        self.address = address
        self.full_scale = full_scale
        self.data_rate = data_rate
        self._sleep = sleep
        # A conversion takes one data period (±10 % oscillator); allow twice that.
        self.conversion_time_s = 1.0 / data_rate
        self._read_register(REG_CONFIG)  # presence: an ACKed pointer write and 2-byte read

    def _read_register(self, reg: int) -> int:
        msb, lsb = self.bus.read_i2c_block_data(self.address, reg, 2)  # MSB first
        return (int(msb) << 8) | int(lsb)

    def _write_register(self, reg: int, value: int) -> None:
        self.bus.write_i2c_block_data(self.address, reg, [(value >> 8) & 0xFF, value & 0xFF])

    def convert(self, channel: int) -> float:
        """One single-shot conversion of AIN`channel`, in volts."""
        self._write_register(REG_CONFIG, config_word(channel, self.full_scale, self.data_rate))
        self._sleep(self.conversion_time_s * 1.1)
        for _ in range(4):
            if self._read_register(REG_CONFIG) & CONFIG_OS:
                return code_to_volts(self._read_register(REG_CONVERSION), self.full_scale)
            self._sleep(self.conversion_time_s * 0.3)
        raise ConversionTimeout(
            f"ADS1115 at 0x{self.address:02x}: AIN{channel} conversion not done after "
            f"{self.conversion_time_s * 2.3:.4f} s"
        )

    def read(self) -> dict[str, float]:
        return {f"ain{c}_v": round(self.convert(c), 6) for c in self.channels}


# -- the catalog entry ------------------------------------------------------------

FULL_SCALES = (6.144, 4.096, 2.048, 1.024, 0.512, 0.256)  # SBAS444 Config register, PGA


class ADS1115Config(I2CDevice):
    driver: Literal["ads1115"]
    address: I2CAddress = Field(default=0x48, description="0x48..0x4B (ADDR to GND, VDD, SDA, SCL).")
    channels: list[Literal[0, 1, 2, 3]] = Field(
        default=[0, 1, 2, 3], min_length=1, description="Inputs to convert (AINx against GND)."
    )
    full_scale: float = Field(
        default=4.096,
        description="PGA full-scale range in volts: 6.144, 4.096, 2.048, 1.024, 0.512 or 0.256 "
        "(inputs never above VDD + 0.3 V).",
    )
    data_rate: Literal[8, 16, 32, 64, 128, 250, 475, 860] = Field(
        default=128, description="Samples per second (lower: less noise, longer conversion)."
    )

    @field_validator("full_scale")
    @classmethod
    def _pga(cls, v: float) -> float:
        if v not in FULL_SCALES:
            raise ValueError(f"must be one of {', '.join(str(f) for f in FULL_SCALES)} (volts)")
        return v

    @field_validator("channels")
    @classmethod
    def _unique(cls, v: list[int]) -> list[int]:
        if len(set(v)) != len(v):
            raise ValueError("each channel at most once")
        return v


def _make(bus: I2CBus, cfg: ADS1115Config) -> ADS1115:
    return ADS1115(bus, cfg.address, channels=cfg.channels, full_scale=cfg.full_scale,
                   data_rate=cfg.data_rate)


def _publishes(cfg: ADS1115Config) -> tuple[str, ...]:
    return tuple(f"ain{c}_v" for c in cfg.channels)


def _resolution(cfg: ADS1115Config) -> dict[str, float]:
    # 16-bit two's complement: one LSB is FS / 2^15 (SBAS444 §9.3.3, Table 3).
    return {f"ain{c}_v": cfg.full_scale / 32768 for c in cfg.channels}


SPEC = DeviceSpec(
    driver="ads1115",
    summary="TI ADS1115 16-bit ADC, 4 single-ended inputs",
    kind="i2c",
    config=ADS1115Config,
    quantities=("ain0_v", "ain1_v", "ain2_v", "ain3_v"),
    make_driver=_make,
    probe=ChipProbe(addresses=(0x48, 0x49, 0x4A, 0x4B)),  # no id register
    reference="TI SBAS444",
    manufacturer="Texas Instruments",
    model="ADS1115",
    publishes=_publishes,
    resolution=_resolution,
)
