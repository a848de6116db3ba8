"""BME280 model: calibration NVM, forced-mode conversions, raw ADC encoding.

The model holds a set of trimming parameters (the BMP280 datasheet's worked
example for T and P, typical values for H) and, on each forced conversion,
finds the raw ADC codes that the datasheet's compensation maps to the wanted
physical values (the formulas are monotonic, so a bisection finds them). The
driver's decoding is what gets exercised.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from gateway.drivers import bme280 as ds  # the datasheet formulas, used to invert
from hardware_sim.i2c import RegisterChip

# BMP280 DS001 §3.12 example trimming values, plus typical humidity trimming.
EXAMPLE_CALIBRATION = ds.Calibration(
    T1=27504, T2=26435, T3=-1000,
    P1=36477, P2=-10685, P3=3024, P4=2855, P5=140, P6=-7, P7=15500, P8=-14600, P9=6000,
    H1=75, H2=362, H3=0, H4=313, H5=50, H6=30,
)


def _bisect(f: Callable[[int], float], target: float, lo: int, hi: int, increasing: bool) -> int:
    while lo < hi:
        mid = (lo + hi) // 2
        below = f(mid) < target if increasing else f(mid) > target
        if below:
            lo = mid + 1
        else:
            hi = mid
    return lo


def encode_calibration(cal: ds.Calibration) -> tuple[bytes, bytes]:
    """Trimming parameters -> NVM bytes at 0x88..0xA1 and 0xE1..0xE7 (Table 16)."""
    block1 = struct.pack(
        "<HhhHhhhhhhhh", cal.T1, cal.T2, cal.T3, cal.P1, cal.P2, cal.P3, cal.P4, cal.P5,
        cal.P6, cal.P7, cal.P8, cal.P9,
    ) + bytes([0, cal.H1])  # 0xA0 is reserved
    h4, h5 = cal.H4 & 0xFFF, cal.H5 & 0xFFF
    block2 = struct.pack("<hB", cal.H2, cal.H3) + bytes(
        [(h4 >> 4) & 0xFF, (h4 & 0x0F) | ((h5 & 0x0F) << 4), (h5 >> 4) & 0xFF, cal.H6 & 0xFF]
    )
    return block1, block2


class BME280Chip(RegisterChip):
    DEFAULTS = {"temperature_c": 21.0, "humidity_pct": 45.0, "pressure_hpa": 1013.25}
    CHIP_ID = ds.CHIP_ID_BME280

    def __init__(self, address: int, *, chip_id: int | None = None,
                 calibration: ds.Calibration = EXAMPLE_CALIBRATION, **kwargs: Any) -> None:
        super().__init__(address, **kwargs)
        self.cal = calibration
        block1, block2 = encode_calibration(calibration)
        self.regs[ds.REG_CALIB00:ds.REG_CALIB00 + 26] = block1
        self.regs[ds.REG_CALIB26:ds.REG_CALIB26 + 7] = block2
        self.regs[ds.REG_CHIP_ID] = chip_id if chip_id is not None else self.CHIP_ID
        self.conversions = 0
        self._busy_reads = 0

    def on_register_write(self, reg: int, value: int) -> None:
        if reg == ds.REG_RESET and value == ds.RESET_WORD:
            self.regs[ds.REG_CTRL_HUM] = self.regs[ds.REG_CTRL_MEAS] = self.regs[ds.REG_CONFIG] = 0
        elif reg == ds.REG_CTRL_MEAS and value & 0x03 in (0x01, 0x02):
            self._convert(value)

    def before_read(self, reg: int, n: int) -> None:
        if reg == ds.REG_STATUS:
            busy = self.faults.slow_conversion or self._busy_reads > 0
            self._busy_reads = max(0, self._busy_reads - 1)
            self.regs[ds.REG_STATUS] = ds.STATUS_MEASURING if busy else 0

    def _convert(self, ctrl_meas: int) -> None:
        """A forced conversion: latch the current values into the data registers."""
        self.conversions += 1
        osrs_p = (ctrl_meas >> 2) & 0x07
        osrs_h = self.regs[ds.REG_CTRL_HUM] & 0x07
        v = self.values_now()
        adc_t = self.encode_temperature(v["temperature_c"])
        _, t_fine = ds.compensate_temperature(adc_t, self.cal)
        # A skipped measurement reads 0x80000 / 0x8000 (§4, data readout).
        adc_p = self.encode_pressure(v["pressure_hpa"], t_fine) if osrs_p else 0x80000
        adc_h = self.encode_humidity(v["humidity_pct"], t_fine) if osrs_h else 0x8000
        data = bytes([
            (adc_p >> 12) & 0xFF, (adc_p >> 4) & 0xFF, (adc_p & 0x0F) << 4,
            (adc_t >> 12) & 0xFF, (adc_t >> 4) & 0xFF, (adc_t & 0x0F) << 4,
            (adc_h >> 8) & 0xFF, adc_h & 0xFF,
        ])
        self.regs[ds.REG_PRESS_MSB:ds.REG_PRESS_MSB + 8] = data

    def encode_temperature(self, celsius: float) -> int:
        return _bisect(lambda a: ds.compensate_temperature(a, self.cal)[0], celsius,
                       0, (1 << 20) - 1, increasing=True)

    def encode_pressure(self, hpa: float, t_fine: int) -> int:
        return _bisect(lambda a: ds.compensate_pressure(a, t_fine, self.cal), hpa * 100.0,
                       0, (1 << 20) - 1, increasing=False)

    def encode_humidity(self, pct: float, t_fine: int) -> int:
        return _bisect(lambda a: ds.compensate_humidity(a, t_fine, self.cal), pct,
                       0, (1 << 16) - 1, increasing=True)


MODEL = BME280Chip
