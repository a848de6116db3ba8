"""BME280: the BMP280 datasheet's worked example (§3.12), the float formulas (§8.1), the simulator."""

from __future__ import annotations

import errno

import pytest

from gateway.drivers import ConversionTimeout, WrongChipError, bme280
from gateway.drivers.bme280 import BME280, Calibration
from hardware_sim.chips.bme280 import EXAMPLE_CALIBRATION, BME280Chip
from hardware_sim.i2c import Faults, SimBus, SimClock

# BST-BMP280-DS001 §3.12 (Table "Calculation example"): trimming values and raw ADC words.
DS_CAL = Calibration(T1=27504, T2=26435, T3=-1000, P1=36477, P2=-10685, P3=3024, P4=2855,
                     P5=140, P6=-7, P7=15500, P8=-14600, P9=6000)
ADC_T, ADC_P = 519888, 415148


def no_sleep(_: float) -> None:
    pass


def test_temperature_worked_example() -> None:
    t, t_fine = bme280.compensate_temperature(ADC_T, DS_CAL)
    assert t == 25.08  # §3.12: 25.08 °C
    assert t_fine == 128422  # §3.12: t_fine 128422


def test_pressure_worked_example() -> None:
    _, t_fine = bme280.compensate_temperature(ADC_T, DS_CAL)
    p = bme280.compensate_pressure(ADC_P, t_fine, DS_CAL)
    # §3.12 gives 100653.27 Pa (its floating-point column, from the unrounded t_fine);
    # the 64-bit integer path lands within 0.02 Pa of it (typical accuracy is 1 Pa).
    assert p == pytest.approx(100653.27, abs=0.02)


def float_t(adc_t: int, c: Calibration) -> tuple[float, int]:
    """BME280 DS §8.1 compensate_T_double, written out here independently."""
    var1 = (adc_t / 16384.0 - c.T1 / 1024.0) * c.T2
    var2 = ((adc_t / 131072.0 - c.T1 / 8192.0) * (adc_t / 131072.0 - c.T1 / 8192.0)) * c.T3
    return (var1 + var2) / 5120.0, int(var1 + var2)


def float_p(adc_p: int, t_fine: int, c: Calibration) -> float:
    """BME280 DS §8.1 compensate_P_double."""
    var1 = t_fine / 2.0 - 64000.0
    var2 = var1 * var1 * c.P6 / 32768.0
    var2 = var2 + var1 * c.P5 * 2.0
    var2 = var2 / 4.0 + c.P4 * 65536.0
    var1 = (c.P3 * var1 * var1 / 524288.0 + c.P2 * var1) / 524288.0
    var1 = (1.0 + var1 / 32768.0) * c.P1
    p = 1048576.0 - adc_p
    p = (p - var2 / 4096.0) * 6250.0 / var1
    var1 = c.P9 * p * p / 2147483648.0
    var2 = p * c.P8 / 32768.0
    return p + (var1 + var2 + c.P7) / 16.0


def float_h(adc_h: int, t_fine: int, c: Calibration) -> float:
    """BME280 DS §8.1 compensate_H_double."""
    var_h = t_fine - 76800.0
    var_h = (adc_h - (c.H4 * 64.0 + c.H5 / 16384.0 * var_h)) * (
        c.H2 / 65536.0 * (1.0 + c.H6 / 67108864.0 * var_h * (1.0 + c.H3 / 67108864.0 * var_h))
    )
    var_h = var_h * (1.0 - c.H1 * var_h / 524288.0)
    return max(0.0, min(100.0, var_h))


@pytest.mark.parametrize("adc_t", [400000, 480000, 519888, 560000])
@pytest.mark.parametrize("adc_h", [20000, 27000, 32000, 40000])
def test_integer_formulas_agree_with_the_float_ones(adc_t: int, adc_h: int) -> None:
    cal = EXAMPLE_CALIBRATION
    t_int, t_fine = bme280.compensate_temperature(adc_t, cal)
    t_flt, t_fine_f = float_t(adc_t, cal)
    assert t_int == pytest.approx(t_flt, abs=0.01)
    assert abs(t_fine - t_fine_f) <= 1
    assert bme280.compensate_pressure(ADC_P, t_fine, cal) == pytest.approx(
        float_p(ADC_P, t_fine, cal), abs=0.1
    )
    # The Q22.10 integer result has a 1/1024 %RH step.
    assert bme280.compensate_humidity(adc_h, t_fine, cal) == pytest.approx(
        float_h(adc_h, t_fine, cal), abs=0.01
    )


def test_calibration_bytes_decode_to_the_example() -> None:
    # dig_T1 = 27504 = 0x6B70 stored LSB first at 0x88 (§3.11.2 Table 17).
    block1 = bytes.fromhex("706b 4367 18fc 7d8e 43d6 d00b 270b 8c00 f9ff 8c3c f8c6 7017 004b")
    block2 = bytes([0x6A, 0x01, 0x00, 0x13, 0x29, 0x03, 0x1E])
    cal = Calibration.from_registers(list(block1), list(block2))
    assert (cal.T1, cal.T2, cal.T3) == (27504, 26435, -1000)
    assert (cal.P1, cal.P2, cal.P3, cal.P4, cal.P5, cal.P6) == (36477, -10685, 3024, 2855, 140, -7)
    assert (cal.P7, cal.P8, cal.P9) == (15500, -14600, 6000)
    # Table 16: H4 = 0xE4<<4 | 0xE5[3:0]; H5 = 0xE6<<4 | 0xE5[7:4]
    h = (cal.H1, cal.H2, cal.H3, cal.H4, cal.H5, cal.H6)
    assert h == (75, 362, 0, 0x13 << 4 | 0x9, 0x03 << 4 | 0x2, 30)


def test_through_the_simulator() -> None:
    chip = BME280Chip(0x76, values={"temperature_c": -10.5, "humidity_pct": 83.2,
                                    "pressure_hpa": 950.0}, clock=SimClock(0.0))
    got = BME280(SimBus(1, [chip]), sleep=no_sleep).read()
    assert got["temperature_c"] == pytest.approx(-10.5, abs=0.01)
    assert got["humidity_pct"] == pytest.approx(83.2, abs=0.01)
    assert got["pressure_hpa"] == pytest.approx(950.0, abs=0.01)
    assert chip.conversions == 1  # one forced conversion per read


def test_bmp280_is_reported_as_the_wrong_chip() -> None:
    chip = BME280Chip(0x76, chip_id=0x58, clock=SimClock(0.0))
    with pytest.raises(WrongChipError, match="BMP280"):
        BME280(SimBus(1, [chip]), sleep=no_sleep)
    other = BME280Chip(0x77, chip_id=0x55, clock=SimClock(0.0))
    with pytest.raises(WrongChipError):
        BME280(SimBus(1, [other]), 0x77, sleep=no_sleep)


def test_oversampling_settings_reach_the_registers() -> None:
    chip = BME280Chip(0x76, clock=SimClock(0.0))
    slept: list[float] = []
    drv = BME280(SimBus(1, [chip]), oversampling_temperature=2, oversampling_pressure=16,
                 oversampling_humidity=4, iir_filter=8, sleep=slept.append)
    drv.read()
    # §5.4.3 ctrl_hum osrs_h: x4 = 011; §5.4.5 ctrl_meas: osrs_t x2 = 010, osrs_p x16 = 101, forced 01
    assert chip.regs[bme280.REG_CTRL_HUM] == 0b011
    assert chip.regs[bme280.REG_CTRL_MEAS] == (0b010 << 5) | (0b101 << 2) | 0b01
    assert chip.regs[bme280.REG_CONFIG] == 0b011 << 2  # §5.4.6 filter x8 = 011
    # §9.1: t_max = 1.25 + 2.3·2 + (2.3·16 + 0.575) + (2.3·4 + 0.575) ms
    assert slept[0] == pytest.approx((1.25 + 2.3 * 2 + 2.3 * 16 + 0.575 + 2.3 * 4 + 0.575) / 1000)


def test_skipped_measurements_are_not_reported() -> None:
    chip = BME280Chip(0x76, clock=SimClock(0.0))
    got = BME280(SimBus(1, [chip]), oversampling_pressure=0, oversampling_humidity=0,
                 sleep=no_sleep).read()
    assert set(got) == {"temperature_c"}


def test_bad_oversampling_is_refused() -> None:
    bus = SimBus(1, [BME280Chip(0x76, clock=SimClock(0.0))])
    with pytest.raises(ValueError):
        BME280(bus, oversampling_pressure=3)
    with pytest.raises(ValueError):
        BME280(bus, iir_filter=5)


def test_conversion_that_never_ends_times_out() -> None:
    chip = BME280Chip(0x76, clock=SimClock(0.0), faults=Faults(slow_conversion=True))
    drv = BME280(SimBus(1, [chip]), sleep=no_sleep)
    with pytest.raises(ConversionTimeout):
        drv.read()


def test_bus_errors_are_oserrors() -> None:
    chip = BME280Chip(0x76, clock=SimClock(0.0), faults=Faults(eio_burst=1))
    with pytest.raises(OSError) as e:
        BME280(SimBus(1, [chip]), sleep=no_sleep)
    assert e.value.errno == errno.EIO
    drv = BME280(SimBus(1, [chip]), sleep=no_sleep)
    chip.faults.nack = True
    with pytest.raises(OSError) as e:
        drv.read()
    assert e.value.errno == errno.EREMOTEIO
