"""INA219: calibration and result arithmetic from SBOS448 §8.5.1 Equations 1-5, the simulator, faults."""

from __future__ import annotations

import math

import pytest

from gateway.drivers import ConversionTimeout, DriverError
from gateway.drivers.ina219 import INA219, calibration
from hardware_sim.chips.ina219 import INA219Chip
from hardware_sim.i2c import Faults, SimBus, SimClock


def no_sleep(_: float) -> None:
    pass


@pytest.mark.parametrize(("imax", "r"), [(3.2, 0.1), (2.0, 0.1), (0.4, 0.1), (10.0, 0.01)])
def test_calibration_equations_1_and_2(imax: float, r: float) -> None:
    current_lsb = imax / 2**15  # Equation 2
    cal = math.trunc(0.04096 / (current_lsb * r))  # Equation 1
    got_cal, got_lsb = calibration(imax, r)
    assert got_cal == cal & 0xFFFE
    assert got_lsb == pytest.approx(current_lsb)


def test_impossible_calibration_is_refused() -> None:
    with pytest.raises(ValueError):
        calibration(0.001, 0.1)  # would need Cal > 65534


@pytest.mark.parametrize(("volts", "amps"), [(12.0, 1.5), (5.0, 0.25), (3.3, -0.8), (24.5, 3.0), (0.0, 0.0)])
def test_through_the_simulator(volts: float, amps: float) -> None:
    chip = INA219Chip(0x41, values={"bus_voltage_v": volts, "current_a": amps}, clock=SimClock(0.0))
    drv = INA219(SimBus(1, [chip]), 0x41, shunt_ohms=0.1, max_current_a=3.2, sleep=no_sleep)
    got = drv.read()
    # Registers as §8.5.1 defines them, computed here from the physical inputs:
    current_lsb = 3.2 / 2**15
    cal = math.trunc(0.04096 / (current_lsb * 0.1)) & 0xFFFE
    shunt_code = round(amps * 0.1 / 10e-6)  # 10 µV LSB
    bus_code = round(volts / 0.004)  # 4 mV LSB
    current_code = int(shunt_code * cal / 4096)  # Equation 4 (truncating)
    power_code = abs(current_code) * bus_code // 5000  # Equation 5
    assert got["shunt_voltage_v"] == pytest.approx(shunt_code * 10e-6, abs=1e-9)
    assert got["bus_voltage_v"] == pytest.approx(bus_code * 0.004, abs=1e-9)
    assert got["current_a"] == pytest.approx(current_code * current_lsb, abs=1e-6)
    assert got["power_w"] == pytest.approx(power_code * 20 * current_lsb, abs=1e-6)  # Equation 3
    # And the physical values come back within a few LSBs.
    assert got["current_a"] == pytest.approx(amps, abs=0.002)
    assert got["power_w"] == pytest.approx(abs(volts * amps), abs=0.02)
    assert chip.conversions == 1  # one triggered conversion per read
    assert chip.regs[0] & 0x7 == 0b011  # MODE: shunt and bus, triggered


def test_shunt_clips_at_the_pga_range() -> None:
    chip = INA219Chip(0x40, values={"current_a": 5.0}, clock=SimClock(0.0))  # 0.5 V over 0.1 Ω
    drv = INA219(SimBus(1, [chip]), max_current_a=3.2, shunt_range_v=0.32, sleep=no_sleep)
    assert drv.read()["shunt_voltage_v"] == pytest.approx(0.32)


def test_faults() -> None:
    chip = INA219Chip(0x40, clock=SimClock(0.0), faults=Faults(slow_conversion=True))
    drv = INA219(SimBus(1, [chip]), sleep=no_sleep)
    with pytest.raises(ConversionTimeout):
        drv.read()
    chip.faults = Faults(eio_burst=1)
    with pytest.raises(OSError):
        drv.read()
    assert drv.read()["bus_voltage_v"] == 5.0


def test_a_chip_that_does_not_keep_calibration_is_refused() -> None:
    class Forgetful(INA219Chip):
        def write(self, data: bytes) -> None:
            super().write(data)
            self.regs[5] = 0

    with pytest.raises(DriverError):
        INA219(SimBus(1, [Forgetful(0x40, clock=SimClock(0.0))]), sleep=no_sleep)
