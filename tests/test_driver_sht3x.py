"""SHT3x: datasheet vectors (CRC §4.12 Table 19, conversion §4.13) and reads through the simulator."""

from __future__ import annotations

import errno

import pytest
from smbus2 import i2c_msg

from gateway.drivers import ConversionTimeout, CrcError, crc8_sensirion
from gateway.drivers.sht3x import SHT3x
from hardware_sim.chips.sht3x import SHT3xChip
from hardware_sim.i2c import Faults, SimBus, SimChip, SimClock, crc8_0x31
from tests.sensirion_support import crc_by_definition, words


def no_sleep(_: float) -> None:
    pass


class Scripted(SimChip):
    """A chip that acknowledges any command and answers with fixed bytes."""

    def __init__(self, address: int, reply: bytes) -> None:
        super().__init__(address, clock=SimClock(0.0))
        self.reply = reply
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def read(self, n: int) -> bytes:
        if self.written and self.written[-1] == b"\xf3\x2d":  # status: 0x0000
            return bytes([0, 0, crc_by_definition(b"\x00\x00")])
        return self.reply[:n]





def test_crc_check_value_from_table_19() -> None:
    # §4.12 Table 19: CRC(0xBEEF) = 0x92.
    assert crc8_sensirion(b"\xbe\xef") == 0x92
    assert crc8_0x31(b"\xbe\xef") == 0x92
    assert crc_by_definition(b"\xbe\xef") == 0x92


@pytest.mark.parametrize(
    ("s_t", "s_rh"), [(0, 0), (0xFFFF, 0xFFFF), (0x6666, 0x8000), (0x1234, 0xABCD)]
)
def test_conversion_formula_section_4_13(s_t: int, s_rh: int) -> None:
    bus = SimBus(1, [Scripted(0x44, words(s_t, s_rh))])
    got = SHT3x(bus, sleep=no_sleep).read()
    # §4.13: T = -45 + 175·S_T/(2^16 - 1); RH = 100·S_RH/(2^16 - 1)
    assert got["temperature_c"] == pytest.approx(-45 + 175 * s_t / (2**16 - 1), abs=0.001)
    assert got["humidity_pct"] == pytest.approx(100 * s_rh / (2**16 - 1), abs=0.001)


def test_end_points() -> None:
    bus = SimBus(1, [Scripted(0x44, words(0, 0xFFFF))])
    assert SHT3x(bus, sleep=no_sleep).read() == {"temperature_c": -45.0, "humidity_pct": 100.0}


def test_sends_single_shot_high_repeatability_without_clock_stretching() -> None:
    chip = Scripted(0x44, words(0x6666, 0x8000))
    SHT3x(SimBus(1, [chip]), sleep=no_sleep).read()
    assert chip.written[-1] == b"\x24\x00"  # §4.3 Table 9
    chip2 = Scripted(0x45, words(0x6666, 0x8000))
    SHT3x(SimBus(1, [chip2]), 0x45, repeatability="low", sleep=no_sleep).read()
    assert chip2.written[-1] == b"\x24\x16"


def test_bad_crc_on_either_word_raises_crc_error() -> None:
    good = words(0x6666, 0x8000)
    for index in (2, 5):
        bad = bytearray(good)
        bad[index] ^= 0x01
        bus = SimBus(1, [Scripted(0x44, bytes(bad))])
        with pytest.raises(CrcError):
            SHT3x(bus, sleep=no_sleep).read()


@pytest.mark.parametrize(("t", "rh"), [(21.5, 45.0), (-40.0, 0.0), (125.0, 100.0), (0.0, 12.34)])
def test_through_the_simulator(t: float, rh: float) -> None:
    chip = SHT3xChip(0x44, values={"temperature_c": t, "humidity_pct": rh}, clock=SimClock(0.0))
    got = SHT3x(SimBus(1, [chip]), sleep=no_sleep).read()
    # One raw step is 175/65535 °C and 100/65535 %RH.
    assert got["temperature_c"] == pytest.approx(t, abs=175 / 65535)
    assert got["humidity_pct"] == pytest.approx(rh, abs=100 / 65535)
    assert chip.measurements == 1


def test_simulated_corrupt_crc_is_detected() -> None:
    chip = SHT3xChip(0x44, clock=SimClock(0.0))
    drv = SHT3x(SimBus(1, [chip]), sleep=no_sleep)
    chip.faults.corrupt_crc = True
    with pytest.raises(CrcError):
        drv.read()
    chip.faults.corrupt_crc = False
    assert drv.read()["humidity_pct"] == pytest.approx(50.0, abs=0.01)


def test_slow_conversion_is_a_timeout_not_a_bus_error() -> None:
    chip = SHT3xChip(0x44, clock=SimClock(0.0), faults=Faults(slow_conversion=True))
    drv = SHT3x(SimBus(1, [chip]), sleep=no_sleep)  # status reads still work
    with pytest.raises(ConversionTimeout):
        drv.read()


def test_stuck_value_repeats_the_last_conversion() -> None:
    clock = SimClock(0.0)
    chip = SHT3xChip(0x44, values={"temperature_c": {"step": {"values": [10, 20], "every": 1}}},
                     clock=clock)
    drv = SHT3x(SimBus(1, [chip]), sleep=no_sleep)
    assert drv.read()["temperature_c"] == pytest.approx(10.0, abs=0.01)
    chip.faults.stuck = True
    clock.fixed = 1.5
    assert drv.read()["temperature_c"] == pytest.approx(10.0, abs=0.01)
    chip.faults.stuck = False
    assert drv.read()["temperature_c"] == pytest.approx(20.0, abs=0.01)


def test_bus_faults_surface_as_oserror() -> None:
    chip = SHT3xChip(0x44, clock=SimClock(0.0))
    bus = SimBus(1, [chip])
    drv = SHT3x(bus, sleep=no_sleep)
    chip.faults.eio_burst = 1
    with pytest.raises(OSError) as e:
        drv.read()
    assert e.value.errno == errno.EIO
    chip.faults.nack = True
    with pytest.raises(OSError) as e:
        drv.read()
    assert e.value.errno == errno.EREMOTEIO
    with pytest.raises(OSError):
        SHT3x(SimBus(1, []), sleep=no_sleep)  # nobody at 0x44


def test_model_nacks_a_read_without_a_measurement() -> None:
    bus = SimBus(1, [SHT3xChip(0x44, clock=SimClock(0.0))])
    with pytest.raises(OSError) as e:
        bus.i2c_rdwr(i2c_msg.read(0x44, 6))
    assert e.value.errno == errno.EREMOTEIO
