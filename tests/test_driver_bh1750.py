"""BH1750: the datasheet's measurement example (p.7), MTreg formula (p.11), simulator reads."""

from __future__ import annotations

import errno

import pytest

from gateway.drivers.bh1750 import BH1750, counts_to_lux
from hardware_sim.chips.bh1750 import BH1750Chip
from hardware_sim.i2c import Faults, SimBus, SimChip, SimClock


def no_sleep(_: float) -> None:
    pass


def test_measurement_example_p7() -> None:
    # p.7: High Resolution Mode, 1000_0011_1001_0000b -> (2^15+2^9+2^8+2^7+2^4) / 1.2 ≈ 28067 lx
    count = 0b1000_0011_1001_0000
    assert count == 2**15 + 2**9 + 2**8 + 2**7 + 2**4
    assert round(counts_to_lux(count)) == 28067


@pytest.mark.parametrize(("mode", "mtreg"), [("high", 69), ("high", 31), ("high", 254), ("high2", 138),
                                             ("low", 69)])
def test_mtreg_sensitivity_p11(mode: str, mtreg: int) -> None:
    count = 1000
    expected = count / 1.2 * (69 / mtreg) / (2 if mode == "high2" else 1)
    assert counts_to_lux(count, mode, mtreg) == pytest.approx(expected)


class Scripted(SimChip):
    def __init__(self, address: int, result: int) -> None:
        super().__init__(address, clock=SimClock(0.0))
        self.result = result
        self.written: list[int] = []

    def write(self, data: bytes) -> None:
        self.written += list(data)

    def read(self, n: int) -> bytes:
        return self.result.to_bytes(2, "big")[:n]


def test_opcodes_sent() -> None:
    chip = Scripted(0x23, 0x8390)
    drv = BH1750(SimBus(1, [chip]), mode="high2", mtreg=138, sleep=no_sleep)
    got = drv.read()
    # Power on; MTreg 138 = 0b100_01010 -> 01000_100, 011_01010; power on; one-time H-res2.
    assert chip.written == [0x01, 0b01000_100, 0b011_01010, 0x01, 0x21]
    assert got["illuminance_lx"] == pytest.approx(0x8390 / 1.2 * 69 / 138 / 2, abs=0.01)


def test_sleeps_the_maximum_measurement_time_scaled_by_mtreg() -> None:
    slept: list[float] = []
    bus = SimBus(1, [Scripted(0x23, 100)])
    BH1750(bus, mtreg=138, sleep=slept.append).read()
    assert slept == [pytest.approx(0.180 * 2)]  # 180 ms max at MTreg 69 (p.5), twice at 138


@pytest.mark.parametrize(("mode", "mtreg", "lux"), [("high", 69, 0.0), ("high", 69, 350.0),
                                                   ("high2", 69, 12.5), ("high", 254, 100.0),
                                                   ("low", 69, 1000.0), ("high", 31, 54612.5)])
def test_through_the_simulator(mode: str, mtreg: int, lux: float) -> None:
    chip = BH1750Chip(0x5C, values={"illuminance_lx": lux}, clock=SimClock(0.0))
    drv = BH1750(SimBus(1, [chip]), 0x5C, mode=mode, mtreg=mtreg, sleep=no_sleep)  # type: ignore[arg-type]
    got = drv.read()["illuminance_lx"]
    step = counts_to_lux(4 if mode == "low" else 1, mode, mtreg)
    assert got == pytest.approx(lux, abs=step)
    assert chip.mtreg == mtreg
    assert not chip.powered  # one-time mode powered down again


def test_saturates_at_65535_counts() -> None:
    chip = BH1750Chip(0x23, values={"illuminance_lx": 200000.0}, clock=SimClock(0.0))
    got = BH1750(SimBus(1, [chip]), sleep=no_sleep).read()
    assert got["illuminance_lx"] == pytest.approx(65535 / 1.2, abs=0.01)


def test_slow_conversion_leaves_the_previous_result() -> None:
    # No ready flag on this chip: reading too early returns the last result.
    clock = SimClock(0.0)
    chip = BH1750Chip(0x23, values={"illuminance_lx": {"step": {"values": [100, 500], "every": 1}}},
                      clock=clock)
    drv = BH1750(SimBus(1, [chip]), sleep=no_sleep)
    assert drv.read()["illuminance_lx"] == pytest.approx(100, abs=1)
    chip.faults.slow_conversion = True
    clock.fixed = 1.5
    assert drv.read()["illuminance_lx"] == pytest.approx(100, abs=1)


def test_bus_faults() -> None:
    chip = BH1750Chip(0x23, clock=SimClock(0.0), faults=Faults(nack=True))
    with pytest.raises(OSError) as e:
        BH1750(SimBus(1, [chip]), sleep=no_sleep)
    assert e.value.errno == errno.EREMOTEIO
    chip.faults.nack = False
    drv = BH1750(SimBus(1, [chip]), sleep=no_sleep)
    chip.faults.eio_burst = 1
    with pytest.raises(OSError):
        drv.read()
    assert drv.read()["illuminance_lx"] == pytest.approx(350, abs=1)


def test_bad_options() -> None:
    bus = SimBus(1, [BH1750Chip(0x23, clock=SimClock(0.0))])
    with pytest.raises(ValueError):
        BH1750(bus, mtreg=30)
    with pytest.raises(ValueError):
        BH1750(bus, mode="ultra")  # type: ignore[arg-type]
