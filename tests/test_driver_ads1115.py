"""ADS1115: SBAS444 output-code table, config words, and conversions through the simulator."""

from __future__ import annotations

import errno

import pytest

from gateway.drivers import ConversionTimeout
from gateway.drivers.ads1115 import ADS1115, code_to_volts
from hardware_sim.chips.ads1115 import ADS1115Chip
from hardware_sim.i2c import Faults, RegisterChip, SimBus, SimClock


def no_sleep(_: float) -> None:
    pass


@pytest.mark.parametrize("fs", [6.144, 4.096, 2.048, 1.024, 0.512, 0.256])
def test_data_format_table(fs: float) -> None:
    # SBAS444 "Data Format": ideal output codes for FS·(2^15-1)/2^15, FS/2^15, 0, -FS/2^15, -FS.
    assert code_to_volts(0x7FFF, fs) == pytest.approx(fs * (2**15 - 1) / 2**15)
    assert code_to_volts(0x0001, fs) == pytest.approx(fs / 2**15)
    assert code_to_volts(0x0000, fs) == 0.0
    assert code_to_volts(0xFFFF, fs) == pytest.approx(-fs / 2**15)
    assert code_to_volts(0x8000, fs) == pytest.approx(-fs)


def test_lsb_size_at_2048_is_62_5_microvolts() -> None:
    # "Full-Scale Range and LSB Size" table: FSR ±2.048 V -> LSB 62.5 µV.
    assert code_to_volts(1, 2.048) == pytest.approx(62.5e-6)


class Recorder(RegisterChip):
    """Records the config words written, answers 'done' with a fixed code (for word checks)."""

    def __init__(self, address: int, code: int) -> None:
        super().__init__(address, clock=SimClock(0.0))
        self.configs: list[int] = []
        self.code = code
        self.reg16 = {0: code, 1: 0x8583}

    def write(self, data: bytes) -> None:
        self.pointer = data[0]
        if len(data) == 3:
            value = (data[1] << 8) | data[2]
            self.configs.append(value)
            self.reg16[1] = value | 0x8000

    def read(self, n: int) -> bytes:
        return self.reg16[self.pointer].to_bytes(2, "big")[:n]


def test_config_words_follow_the_register_map() -> None:
    chip = Recorder(0x48, 0x4000)
    drv = ADS1115(SimBus(1, [chip]), full_scale=2.048, data_rate=860, sleep=no_sleep)
    got = drv.read()
    # OS=1 | MUX=1xx (AINx vs GND) | PGA=010 (±2.048) | MODE=1 | DR=111 (860) | COMP_QUE=11
    expected = [
        (1 << 15) | ((4 + ch) << 12) | (0b010 << 9) | (1 << 8) | (0b111 << 5) | 0b11 for ch in range(4)
    ]
    assert chip.configs == expected
    assert [hex(w) for w in expected] == ["0xc5e3", "0xd5e3", "0xe5e3", "0xf5e3"]
    assert got == {f"ain{c}_v": 1.024 for c in range(4)}  # 0x4000 = half of +FS


@pytest.mark.parametrize("fs", [4.096, 0.256])
def test_through_the_simulator(fs: float) -> None:
    values = {"ain0_v": 0.0, "ain1_v": 0.1234, "ain2_v": -0.05, "ain3_v": 3.3}
    chip = ADS1115Chip(0x49, values=values, clock=SimClock(0.0))
    got = ADS1115(SimBus(1, [chip]), 0x49, full_scale=fs, sleep=no_sleep).read()
    lsb = fs / 2**15
    for key, v in values.items():
        clipped = max(-fs, min(v, fs - lsb))  # the output clips at 8000h / 7FFFh
        assert got[key] == pytest.approx(clipped, abs=lsb / 2 + 1e-6), key
    assert chip.conversions == 4  # one single-shot conversion per channel


def test_selected_channels_only() -> None:
    chip = ADS1115Chip(0x48, values={"ain2_v": 1.5}, clock=SimClock(0.0))
    got = ADS1115(SimBus(1, [chip]), channels=[2], sleep=no_sleep).read()
    assert got == {"ain2_v": pytest.approx(1.5, abs=0.000125)}


def test_invalid_options_are_refused() -> None:
    bus = SimBus(1, [ADS1115Chip(0x48, clock=SimClock(0.0))])
    with pytest.raises(ValueError):
        ADS1115(bus, full_scale=5.0)
    with pytest.raises(ValueError):
        ADS1115(bus, data_rate=100)
    with pytest.raises(ValueError):
        ADS1115(bus, channels=[4])


def test_conversion_that_never_finishes_times_out() -> None:
    chip = ADS1115Chip(0x48, clock=SimClock(0.0), faults=Faults(slow_conversion=True))
    drv = ADS1115(SimBus(1, [chip]), sleep=no_sleep)
    with pytest.raises(ConversionTimeout):
        drv.read()


def test_bus_faults_surface_as_oserror_and_recover() -> None:
    chip = ADS1115Chip(0x48, values={"ain0_v": 1.0}, clock=SimClock(0.0))
    drv = ADS1115(SimBus(1, [chip]), channels=[0], sleep=no_sleep)
    chip.faults.eio_burst = 2
    for _ in range(2):
        with pytest.raises(OSError) as e:
            drv.read()
        assert e.value.errno == errno.EIO
    assert drv.read()["ain0_v"] == pytest.approx(1.0, abs=0.000125)


def test_stuck_inputs() -> None:
    clock = SimClock(0.0)
    chip = ADS1115Chip(0x48, values={"ain0_v": {"step": {"values": [1.0, 2.0], "every": 1}}},
                       clock=clock, faults=Faults(stuck=True))
    drv = ADS1115(SimBus(1, [chip]), channels=[0], sleep=no_sleep)
    assert drv.read()["ain0_v"] == pytest.approx(1.0, abs=0.001)
    clock.fixed = 1.5
    assert drv.read()["ain0_v"] == pytest.approx(1.0, abs=0.001)
