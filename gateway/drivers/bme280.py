"""Bosch BME280 humidity, pressure and temperature sensor.

Reference: Bosch Sensortec BST-BME280-DS002 (rev 1.23). Register map §5.3–5.4,
calibration layout Table 16 (§4.2.2), integer compensation §4.2.3 (the same
formulas as the BMP280 datasheet BST-BMP280-DS001 §3.11.3, whose worked example
in §3.12 Table 17 the tests check), measurement time §9.1.

Every reading is one forced-mode conversion followed by one 8-byte burst read
of 0xF7..0xFE, so temperature, pressure and humidity belong together.

The catalog entry follows the driver:
`driver: bme280` — Bosch BME280 temperature, humidity and pressure.
The driver class above takes plain arguments; only `_make` reads the config.
"""

from __future__ import annotations

import time
from typing import Literal, NamedTuple

from gateway.catalog.spec import ChipProbe, DeviceSpec, I2CBus, Sleep
from gateway.config.model import I2CDevice, Section
from gateway.config.schema import Field
from gateway.config.types import I2CAddress
from gateway.drivers import ConversionTimeout, WrongChipError, s16, u16_le

DEFAULT_ADDRESS = 0x76  # SDO to GND; 0x77 with SDO to VDDIO (§6.2)

# §5.3 memory map
REG_CALIB00 = 0x88  # 0x88..0xA1: dig_T1..dig_P9, then dig_H1 at 0xA1
REG_CHIP_ID = 0xD0
REG_RESET = 0xE0
REG_CALIB26 = 0xE1  # 0xE1..0xE7: dig_H2..dig_H6
REG_CTRL_HUM = 0xF2
REG_STATUS = 0xF3
REG_CTRL_MEAS = 0xF4
REG_CONFIG = 0xF5
REG_PRESS_MSB = 0xF7  # 0xF7..0xFE: press[3], temp[3], hum[2]

CHIP_ID_BME280 = 0x60
CHIP_ID_BMP280 = (0x56, 0x57, 0x58)  # samples and mass production (BMP280 DS §3.10)
RESET_WORD = 0xB6
STATUS_MEASURING = 0x08
MODE_FORCED = 0x01

#: osrs_x register codes (§5.4.3, Table 20-24): oversampling factor -> code.
OVERSAMPLING = {0: 0b000, 1: 0b001, 2: 0b010, 4: 0b011, 8: 0b100, 16: 0b101}


# A NamedTuple: a sensors-only daemon loads drivers (why that matters: gateway.slots).
class Calibration(NamedTuple):
    """Trimming parameters (§4.2.2, Table 16)."""

    T1: int
    T2: int
    T3: int
    P1: int
    P2: int
    P3: int
    P4: int
    P5: int
    P6: int
    P7: int
    P8: int
    P9: int
    H1: int = 0
    H2: int = 0
    H3: int = 0
    H4: int = 0
    H5: int = 0
    H6: int = 0

    @classmethod
    def from_registers(cls, block1: list[int], block2: list[int]) -> Calibration:
        """block1: 26 bytes from 0x88; block2: 7 bytes from 0xE1."""
        b = block1
        words = [u16_le(b[i], b[i + 1]) for i in range(0, 24, 2)]
        t1, t2, t3 = words[0], s16(words[1]), s16(words[2])
        p1 = words[3]
        p = [s16(w) for w in words[4:12]]
        h1 = b[25]
        e = block2
        h2 = s16(u16_le(e[0], e[1]))
        h3 = e[2]
        # dig_H4/H5 are 12-bit signed values sharing register 0xE5 (Table 16).
        h4 = (_s8(e[3]) << 4) | (e[4] & 0x0F)
        h5 = (_s8(e[5]) << 4) | (e[4] >> 4)
        h6 = _s8(e[6])
        return cls(
            T1=t1, T2=t2, T3=t3, P1=p1, P2=p[0], P3=p[1], P4=p[2], P5=p[3], P6=p[4], P7=p[5],
            P8=p[6], P9=p[7], H1=h1, H2=h2, H3=h3, H4=h4, H5=h5, H6=h6,
        )


def _s8(v: int) -> int:
    return v - 0x100 if v & 0x80 else v


def compensate_temperature(adc_t: int, cal: Calibration) -> tuple[float, int]:
    """§4.2.3 BME280_compensate_T_int32: (°C, t_fine)."""
    var1 = (((adc_t >> 3) - (cal.T1 << 1)) * cal.T2) >> 11
    var2 = (((((adc_t >> 4) - cal.T1) * ((adc_t >> 4) - cal.T1)) >> 12) * cal.T3) >> 14
    t_fine = var1 + var2
    t = (t_fine * 5 + 128) >> 8
    return t / 100.0, t_fine


def compensate_pressure(adc_p: int, t_fine: int, cal: Calibration) -> float:
    """§4.2.3 BME280_compensate_P_int64: pressure in Pa (Q24.8 / 256)."""
    var1 = t_fine - 128000
    var2 = var1 * var1 * cal.P6
    var2 = var2 + ((var1 * cal.P5) << 17)
    var2 = var2 + (cal.P4 << 35)
    var1 = ((var1 * var1 * cal.P3) >> 8) + ((var1 * cal.P2) << 12)
    var1 = (((1 << 47) + var1) * cal.P1) >> 33
    if var1 == 0:
        return 0.0  # avoid division by zero (datasheet does the same)
    p = 1048576 - adc_p
    p = _cdiv(((p << 31) - var2) * 3125, var1)
    var1 = (cal.P9 * (p >> 13) * (p >> 13)) >> 25
    var2 = (cal.P8 * p) >> 19
    p = ((p + var1 + var2) >> 8) + (cal.P7 << 4)
    return p / 256.0


def compensate_humidity(adc_h: int, t_fine: int, cal: Calibration) -> float:
    """§4.2.3 bme280_compensate_H_int32: %RH (Q22.10 / 1024)."""
    v = t_fine - 76800
    a = (((adc_h << 14) - (cal.H4 << 20) - (cal.H5 * v)) + 16384) >> 15
    b = (((((v * cal.H6) >> 10) * (((v * cal.H3) >> 11) + 32768)) >> 10) + 2097152) * cal.H2
    v = a * ((b + 8192) >> 14)
    v = v - (((((v >> 15) * (v >> 15)) >> 7) * cal.H1) >> 4)
    v = max(0, min(v, 419430400))
    return (v >> 12) / 1024.0


def wait_for_conversion(bus: I2CBus, addr: int, budget: float, sleep: Sleep, what: str) -> None:
    """Sleep the maximum measurement time, then poll status.measuring (§5.4.4) a few times."""
    sleep(budget)
    for _ in range(3):
        if not bus.read_byte_data(addr, REG_STATUS) & STATUS_MEASURING:
            return
        sleep(budget / 4)
    raise ConversionTimeout(f"{what} at 0x{addr:02x} still measuring after {budget * 2:.3f} s")


def _cdiv(n: int, d: int) -> int:
    """Integer division truncating toward zero, as C's `/` does."""
    q = abs(n) // abs(d)
    return q if (n >= 0) == (d >= 0) else -q


def measurement_time_s(osrs_t: int, osrs_p: int, osrs_h: int) -> float:
    """Maximum measurement time (§9.1, Appendix B): 1.25 + 2.3·T + (2.3·P + 0.575) + ..."""
    t = 1.25 + 2.3 * osrs_t
    if osrs_p:
        t += 2.3 * osrs_p + 0.575
    if osrs_h:
        t += 2.3 * osrs_h + 0.575
    return t / 1000.0


class BME280:
    """BME280 in forced mode: one conversion and one burst read per `read()`."""

    def __init__(
        self,
        bus: I2CBus,
        address: int = DEFAULT_ADDRESS,
        *,
        oversampling_temperature: int = 1,
        oversampling_pressure: int = 1,
        oversampling_humidity: int = 1,
        iir_filter: int = 0,
        sleep: Sleep = time.sleep,
    ) -> None:
        for name, value in (
            ("oversampling_temperature", oversampling_temperature),
            ("oversampling_pressure", oversampling_pressure),
            ("oversampling_humidity", oversampling_humidity),
        ):
            if value not in OVERSAMPLING:
                raise ValueError(f"{name} must be one of {sorted(OVERSAMPLING)}, not {value}")
        if iir_filter not in (0, 2, 4, 8, 16):
            raise ValueError(f"iir_filter must be 0, 2, 4, 8 or 16, not {iir_filter}")
        self.bus = bus
        self.address = address
        self._osrs = (oversampling_temperature, oversampling_pressure, oversampling_humidity)
        self._sleep = sleep
        chip_id = bus.read_byte_data(address, REG_CHIP_ID)
        if chip_id in CHIP_ID_BMP280:
            raise WrongChipError(
                f"chip at 0x{address:02x} is a BMP280 (id 0x{chip_id:02x}), not a BME280: "
                "it has no humidity sensor; use driver: bmp280"
            )
        if chip_id != CHIP_ID_BME280:
            raise WrongChipError(
                f"chip at 0x{address:02x} has id 0x{chip_id:02x}, not a BME280 (0x60)"
            )
        block1 = bus.read_i2c_block_data(address, REG_CALIB00, 26)
        block2 = bus.read_i2c_block_data(address, REG_CALIB26, 7)
        self.calibration = Calibration.from_registers(list(block1), list(block2))
        # Sleep mode before writing config (§5.4.6: writes in normal mode may be ignored).
        bus.write_byte_data(address, REG_CTRL_MEAS, 0x00)
        filter_code = {0: 0, 2: 1, 4: 2, 8: 3, 16: 4}[iir_filter]
        bus.write_byte_data(address, REG_CONFIG, filter_code << 2)

    def read(self) -> dict[str, float]:
        osrs_t, osrs_p, osrs_h = self._osrs
        bus, addr = self.bus, self.address
        # ctrl_hum takes effect only after a write to ctrl_meas (§5.4.3).
        bus.write_byte_data(addr, REG_CTRL_HUM, OVERSAMPLING[osrs_h])
        bus.write_byte_data(
            addr,
            REG_CTRL_MEAS,
            (OVERSAMPLING[osrs_t] << 5) | (OVERSAMPLING[osrs_p] << 2) | MODE_FORCED,
        )
        wait_for_conversion(bus, addr, measurement_time_s(osrs_t, osrs_p, osrs_h), self._sleep,
                            "BME280")
        d = bus.read_i2c_block_data(addr, REG_PRESS_MSB, 8)
        return self.convert(list(d))

    def convert(self, d: list[int]) -> dict[str, float]:
        """Turn the 8 data bytes (0xF7..0xFE) into quantities (§4.2.3)."""
        adc_p = (d[0] << 12) | (d[1] << 4) | (d[2] >> 4)
        adc_t = (d[3] << 12) | (d[4] << 4) | (d[5] >> 4)
        adc_h = (d[6] << 8) | d[7]
        temperature, t_fine = compensate_temperature(adc_t, self.calibration)
        out = {"temperature_c": round(temperature, 2)}
        if self._osrs[1]:
            pressure = compensate_pressure(adc_p, t_fine, self.calibration)
            out["pressure_hpa"] = round(pressure / 100.0, 4)
        if self._osrs[2]:
            out["humidity_pct"] = round(compensate_humidity(adc_h, t_fine, self.calibration), 3)
        return out


# -- the catalog entry ------------------------------------------------------------

Oversampling = Literal[0, 1, 2, 4, 8, 16]


class BME280Oversampling(Section):
    temperature: Literal[1, 2, 4, 8, 16] = Field(default=1, description="Temperature oversampling.")
    pressure: Oversampling = Field(default=1, description="Pressure oversampling (0: skip).")
    humidity: Oversampling = Field(default=1, description="Humidity oversampling (0: skip).")


class BME280Config(I2CDevice):
    driver: Literal["bme280"]
    address: I2CAddress = Field(default=0x76, description="0x76 (SDO low) or 0x77 (SDO high).")
    oversampling: BME280Oversampling = Field(default_factory=BME280Oversampling)
    iir_filter: Literal[0, 2, 4, 8, 16] = Field(default=0, description="IIR filter coefficient.")


def _make(bus: I2CBus, cfg: BME280Config) -> BME280:
    return BME280(
        bus,
        cfg.address,
        oversampling_temperature=cfg.oversampling.temperature,
        oversampling_pressure=cfg.oversampling.pressure,
        oversampling_humidity=cfg.oversampling.humidity,
        iir_filter=cfg.iir_filter,
    )


def _publishes(cfg: BME280Config) -> tuple[str, ...]:
    # Oversampling 0 skips that measurement: the driver then leaves its key out.
    return ("temperature_c",
            *(("humidity_pct",) if cfg.oversampling.humidity else ()),
            *(("pressure_hpa",) if cfg.oversampling.pressure else ()))


SPEC = DeviceSpec(
    driver="bme280",
    summary="Bosch BME280 temperature, humidity and pressure",
    kind="i2c",
    config=BME280Config,
    quantities=("temperature_c", "humidity_pct", "pressure_hpa"),
    make_driver=_make,
    probe=ChipProbe(addresses=(0x76, 0x77), id_register=0xD0, id_values=frozenset({0x60})),
    reference="Bosch BST-BME280-DS002",
    manufacturer="Bosch Sensortec",
    model="BME280",
    publishes=_publishes,
    # §4.2.3: temperature in 0.01 °C, pressure in 1/256 Pa, humidity in 1/1024 %RH.
    resolution=lambda cfg: {"temperature_c": 0.01, "pressure_hpa": 1 / 25600,
                            "humidity_pct": 1 / 1024},
)
