"""BMP280: the §3.12 worked example read through raw registers, chip ids, the simulator, faults."""

from __future__ import annotations

import struct

import pytest

from gateway.drivers import ConversionTimeout, WrongChipError
from gateway.drivers.bme280 import BME280
from gateway.drivers.bmp280 import BMP280
from hardware_sim.chips.bmp280 import BMP280Chip
from hardware_sim.i2c import Faults, RegisterChip, SimBus, SimClock


def no_sleep(_: float) -> None:
    pass


def example_chip() -> RegisterChip:
    """Registers holding exactly the BST-BMP280-DS001 §3.12 example (trimming + raw ADC)."""
    chip = RegisterChip(0x76, clock=SimClock(0.0))
    # §3.11.2 Table 17: dig_T1..dig_P9 little-endian from 0x88; T1/P1 unsigned, the rest signed.
    chip.regs[0x88:0xA0] = struct.pack("<HhhHhhhhhhhh", 27504, 26435, -1000, 36477, -10685, 3024,
                                       2855, 140, -7, 15500, -14600, 6000)
    chip.regs[0xD0] = 0x58
    adc_p, adc_t = 415148, 519888  # 20-bit, msb/lsb/xlsb[7:4] (§3.9)
    chip.regs[0xF7:0xFD] = bytes([adc_p >> 12, (adc_p >> 4) & 0xFF, (adc_p & 0xF) << 4,
                                  adc_t >> 12, (adc_t >> 4) & 0xFF, (adc_t & 0xF) << 4])
    return chip


def test_worked_example_through_the_registers() -> None:
    got = BMP280(SimBus(1, [example_chip()]), sleep=no_sleep).read()
    assert got["temperature_c"] == 25.08  # §3.12
    # §3.12: 100653.27 Pa (float column); the integer path is within 0.02 Pa.
    assert got["pressure_hpa"] == pytest.approx(1006.5327, abs=0.0002)


def test_measurement_time_table_13() -> None:
    # §3.8.1 Table 13 maximum measurement times: (osrs_t, osrs_p) -> ms
    for (t, p), ms in {(1, 1): 6.4, (1, 2): 8.7, (1, 4): 13.3, (1, 8): 22.5, (2, 16): 43.2}.items():
        slept: list[float] = []
        BMP280(SimBus(1, [example_chip()]), oversampling_temperature=t, oversampling_pressure=p,
               sleep=slept.append).read()
        assert slept[0] * 1000 == pytest.approx(ms, abs=0.05)


def test_chip_ids() -> None:
    for chip_id in (0x56, 0x57, 0x58):
        chip = example_chip()
        chip.regs[0xD0] = chip_id
        BMP280(SimBus(1, [chip]), sleep=no_sleep)
    chip = example_chip()
    chip.regs[0xD0] = 0x60
    with pytest.raises(WrongChipError, match="BME280"):
        BMP280(SimBus(1, [chip]), sleep=no_sleep)
    # And the other way round: a BMP280 is not silently read as a BME280.
    with pytest.raises(WrongChipError, match="BMP280"):
        BME280(SimBus(1, [BMP280Chip(0x76, clock=SimClock(0.0))]), sleep=no_sleep)


@pytest.mark.parametrize(("t", "p"), [(21.0, 1013.25), (-30.0, 700.0), (60.0, 1100.0)])
def test_through_the_simulator(t: float, p: float) -> None:
    chip = BMP280Chip(0x77, values={"temperature_c": t, "pressure_hpa": p}, clock=SimClock(0.0))
    got = BMP280(SimBus(1, [chip]), 0x77, oversampling_pressure=16, sleep=no_sleep).read()
    assert got["temperature_c"] == pytest.approx(t, abs=0.01)
    assert got["pressure_hpa"] == pytest.approx(p, abs=0.01)
    assert chip.regs[0xF4] == (0b001 << 5) | (0b101 << 2) | 0b01  # §4.3.4 ctrl_meas


def test_faults() -> None:
    chip = BMP280Chip(0x76, clock=SimClock(0.0), faults=Faults(slow_conversion=True))
    drv = BMP280(SimBus(1, [chip]), sleep=no_sleep)
    with pytest.raises(ConversionTimeout):
        drv.read()
    chip.faults.slow_conversion = False
    chip.faults.eio_burst = 1
    with pytest.raises(OSError):
        drv.read()
    assert drv.read()["temperature_c"] == pytest.approx(21.0, abs=0.01)
