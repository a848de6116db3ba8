"""AHT20: signal conversion (§6), frame layout and CRC (§5.4), init sequence, simulator, faults."""

from __future__ import annotations

import pytest

from gateway.drivers import ConversionTimeout, CrcError
from gateway.drivers.aht20 import AHT20
from hardware_sim.chips.aht20 import AHT20Chip
from hardware_sim.i2c import Faults, SimBus, SimChip, SimClock


def no_sleep(_: float) -> None:
    pass


def crc(data: bytes) -> int:
    reg = 0xFF  # CRC-8, x^8 + x^5 + x^4 + 1, initial value 0xFF
    for byte in data:
        for bit in range(7, -1, -1):
            top = ((reg >> 7) & 1) ^ ((byte >> bit) & 1)
            reg = ((reg << 1) & 0xFF) ^ (0x31 if top else 0)
    return reg


def frame(s_rh: int, s_t: int, status: int = 0x18) -> bytes:
    body = bytes([status, s_rh >> 12, (s_rh >> 4) & 0xFF, ((s_rh & 0xF) << 4) | (s_t >> 16),
                  (s_t >> 8) & 0xFF, s_t & 0xFF])
    return body + bytes([crc(body)])


class Scripted(SimChip):
    def __init__(self, reply: bytes, status: int = 0x18) -> None:
        super().__init__(0x38, clock=SimClock(0.0))
        self.reply = reply
        self.status = status
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def read(self, n: int) -> bytes:
        return bytes([self.status]) if n == 1 else self.reply[:n]


@pytest.mark.parametrize(
    ("s_rh", "s_t"), [(0x80000, 0x66666), (0, 0), (0xFFFFF, 0xFFFFF), (0x12345, 0xABCDE)]
)
def test_conversion_section_6(s_rh: int, s_t: int) -> None:
    got = AHT20(SimBus(1, [Scripted(frame(s_rh, s_t))]), sleep=no_sleep).read()
    assert got["humidity_pct"] == pytest.approx(s_rh / 2**20 * 100, abs=0.001)
    assert got["temperature_c"] == pytest.approx(s_t / 2**20 * 200 - 50, abs=0.001)


def test_command_sequence() -> None:
    chip = Scripted(frame(0x80000, 0x66666), status=0x10)  # calibration bit clear
    AHT20(SimBus(1, [chip]), sleep=no_sleep).read()
    # §5.4: status (0x71), initialise (0xBE 0x08 0x00) when bit 3 is 0, trigger (0xAC 0x33 0x00)
    assert chip.writes == [b"\x71", b"\xbe\x08\x00", b"\xac\x33\x00"]


def test_crc_error() -> None:
    bad = bytearray(frame(0x80000, 0x66666))
    bad[2] ^= 1
    with pytest.raises(CrcError):
        AHT20(SimBus(1, [Scripted(bytes(bad))]), sleep=no_sleep).read()


@pytest.mark.parametrize(("t", "rh"), [(21.5, 45.5), (-40.0, 0.0), (85.0, 100.0)])
def test_through_the_simulator(t: float, rh: float) -> None:
    chip = AHT20Chip(0x38, values={"temperature_c": t, "humidity_pct": rh}, calibrated=False,
                     clock=SimClock(0.0))
    got = AHT20(SimBus(1, [chip]), sleep=no_sleep).read()
    assert chip.inits == 1
    assert got["temperature_c"] == pytest.approx(t, abs=200 / 2**20 + 0.001)
    assert got["humidity_pct"] == pytest.approx(rh, abs=100 / 2**20 + 0.001)


def test_simulated_faults() -> None:
    chip = AHT20Chip(0x38, clock=SimClock(0.0))
    drv = AHT20(SimBus(1, [chip]), sleep=no_sleep)
    chip.faults = Faults(corrupt_crc=True)
    with pytest.raises(CrcError):
        drv.read()
    chip.faults = Faults(slow_conversion=True)
    with pytest.raises(ConversionTimeout):
        drv.read()
    chip.faults = Faults(nack=True)
    with pytest.raises(OSError):
        drv.read()
    chip.faults = Faults()
    assert drv.read()["humidity_pct"] == pytest.approx(50.0, abs=0.001)
