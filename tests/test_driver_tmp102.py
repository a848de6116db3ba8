"""TMP102: the data-format tables of TI SBOS397 (12-bit and 13-bit), through bytes and the simulator."""

from __future__ import annotations

import errno

import pytest

from gateway.drivers.tmp102 import TMP102, decode_temperature
from hardware_sim.chips.tmp102 import TMP102Chip
from hardware_sim.i2c import Faults, SimBus, SimClock

# SBOS397 §7.5.2, 12-bit temperature data format (°C, 12-bit digital output).
TABLE_12 = [(127.9375, 0x7FF), (100, 0x640), (80, 0x500), (75, 0x4B0), (50, 0x320), (25, 0x190),
            (0.25, 0x004), (0, 0x000), (-0.25, 0xFFC), (-25, 0xE70), (-55, 0xC90)]
# SBOS397 §7.5.2, 13-bit (extended mode) temperature data format.
TABLE_13 = [(150, 0x0960), (128, 0x0800), (127.9375, 0x07FF), (100, 0x0640), (80, 0x0500),
            (75, 0x04B0), (50, 0x0320), (25, 0x0190), (0.25, 0x0004), (0, 0x0000),
            (-0.25, 0x1FFC), (-25, 0x1E70), (-55, 0x1C90)]


@pytest.mark.parametrize(("celsius", "code"), TABLE_12)
def test_12_bit_table(celsius: float, code: int) -> None:
    raw = code << 4  # left-justified in the 16-bit register, low nibble 0
    assert decode_temperature(raw >> 8, raw & 0xFF, extended=False) == celsius


@pytest.mark.parametrize(("celsius", "code"), TABLE_13)
def test_13_bit_table(celsius: float, code: int) -> None:
    raw = (code << 3) | 0x1  # bit 0 = 1 flags the extended format
    assert decode_temperature(raw >> 8, raw & 0xFF, extended=True) == celsius


@pytest.mark.parametrize(("celsius", "code"), TABLE_12)
def test_simulator_encodes_the_12_bit_table(celsius: float, code: int) -> None:
    chip = TMP102Chip(0x48, values={"temperature_c": celsius}, clock=SimClock(0.0))
    bus = SimBus(1, [chip])
    drv = TMP102(bus)
    assert bus.read_i2c_block_data(0x48, 0x00, 2) == [(code << 4) >> 8, (code << 4) & 0xFF]
    assert drv.read() == {"temperature_c": celsius}


@pytest.mark.parametrize(("celsius", "code"), TABLE_13)
def test_simulator_in_extended_mode(celsius: float, code: int) -> None:
    chip = TMP102Chip(0x49, values={"temperature_c": celsius}, clock=SimClock(0.0))
    bus = SimBus(1, [chip])
    drv = TMP102(bus, 0x49, extended=True)
    # §7.5.3: the driver set EM (byte 2, bit 4) and kept the rest of the power-on 0x60A0.
    assert bus.read_i2c_block_data(0x49, 0x01, 2) == [0x60, 0xB0]
    raw = (code << 3) | 1
    assert bus.read_i2c_block_data(0x49, 0x00, 2) == [raw >> 8, raw & 0xFF]
    assert drv.read() == {"temperature_c": celsius}


def test_12_bit_mode_clips_at_its_range() -> None:
    chip = TMP102Chip(0x48, values={"temperature_c": 140.0}, clock=SimClock(0.0))
    assert TMP102(SimBus(1, [chip])).read() == {"temperature_c": 127.9375}


def test_faults() -> None:
    chip = TMP102Chip(0x48, clock=SimClock(0.0), faults=Faults(absent_until=5.0))
    with pytest.raises(OSError) as e:
        TMP102(SimBus(1, [chip]))
    assert e.value.errno == errno.EREMOTEIO
    chip.clock = SimClock(10.0)  # the chip "appears"
    drv = TMP102(SimBus(1, [chip]))
    chip.faults.eio_burst = 1
    with pytest.raises(OSError) as e:
        drv.read()
    assert e.value.errno == errno.EIO
    assert drv.read() == {"temperature_c": 22.5}
