"""SHT4x: conversion formulas (§4.6), commands (§4.5), CRC (§4.4), the simulator and faults."""

from __future__ import annotations

import pytest

from gateway.drivers import ConversionTimeout, CrcError
from gateway.drivers.sht4x import SHT4x
from hardware_sim.chips.sht4x import SHT4xChip
from hardware_sim.i2c import Faults, SimBus, SimChip, SimClock
from tests.sensirion_support import words


def no_sleep(_: float) -> None:
    pass


class Scripted(SimChip):
    def __init__(self, address: int, reply: bytes) -> None:
        super().__init__(address, clock=SimClock(0.0))
        self.reply = reply
        self.commands: list[int] = []

    def write(self, data: bytes) -> None:
        self.commands += list(data)

    def read(self, n: int) -> bytes:
        return words(0x1234, 0x5678)[:n] if self.commands[-1] == 0x89 else self.reply[:n]


@pytest.mark.parametrize(("s_t", "s_rh"), [(0x6666, 0x8000), (0, 0x0C49), (0xFFFF, 0xFFFF), (0x1000, 0xF000)])
def test_conversion_section_4_6(s_t: int, s_rh: int) -> None:
    drv = SHT4x(SimBus(1, [Scripted(0x44, words(s_t, s_rh))]), sleep=no_sleep)
    assert drv.serial_number == 0x12345678
    got = drv.read()
    assert got["temperature_c"] == pytest.approx(-45 + 175 * s_t / 65535, abs=0.001)
    rh = -6 + 125 * s_rh / 65535
    assert got["humidity_pct"] == pytest.approx(min(100, max(0, rh)), abs=0.001)


def test_precision_commands() -> None:
    for precision, cmd in (("high", 0xFD), ("medium", 0xF6), ("low", 0xE0)):
        chip = Scripted(0x44, words(0x6666, 0x8000))
        SHT4x(SimBus(1, [chip]), precision=precision, sleep=no_sleep).read()  # type: ignore[arg-type]
        assert chip.commands == [0x89, cmd]


def test_crc_error() -> None:
    bad = bytearray(words(0x6666, 0x8000))
    bad[5] ^= 0x80
    with pytest.raises(CrcError):
        SHT4x(SimBus(1, [Scripted(0x44, bytes(bad))]), sleep=no_sleep).read()


@pytest.mark.parametrize(("t", "rh"), [(25.0, 40.0), (-40.0, 0.0), (125.0, 100.0)])
def test_through_the_simulator(t: float, rh: float) -> None:
    chip = SHT4xChip(0x46, values={"temperature_c": t, "humidity_pct": rh}, clock=SimClock(0.0))
    got = SHT4x(SimBus(1, [chip]), 0x46, sleep=no_sleep).read()
    assert got["temperature_c"] == pytest.approx(t, abs=175 / 65535)
    assert got["humidity_pct"] == pytest.approx(rh, abs=125 / 65535)


def test_simulated_faults() -> None:
    chip = SHT4xChip(0x44, clock=SimClock(0.0))
    drv = SHT4x(SimBus(1, [chip]), sleep=no_sleep)
    chip.faults = Faults(corrupt_crc=True)
    with pytest.raises(CrcError):
        drv.read()
    chip.faults = Faults(slow_conversion=True)
    with pytest.raises(ConversionTimeout):
        drv.read()
    chip.faults = Faults(eio_burst=1)
    with pytest.raises(OSError):
        drv.read()
    assert drv.read()["temperature_c"] == pytest.approx(22.0, abs=0.01)
