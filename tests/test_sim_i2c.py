"""The simulated bus: the smbus2 surface (incl. i2c_rdwr with real i2c_msg), faults, `sim:` validation."""

from __future__ import annotations

import errno

import pytest
from smbus2 import i2c_msg

from gateway.config import ConfigError, parse_config
from hardware_sim.chips.tmp102 import TMP102Chip
from hardware_sim.i2c import Faults, RegisterChip, SimBus, SimClock, make_chip, validate_sim


def reg_chip(address: int = 0x20) -> RegisterChip:
    chip = RegisterChip(address, clock=SimClock(0.0))
    chip.regs[0x10:0x14] = bytes([0xDE, 0xAD, 0xBE, 0xEF])
    return chip


def test_i2c_rdwr_with_real_i2c_msg_objects() -> None:
    chip = reg_chip()
    bus = SimBus(1, [chip])
    write = i2c_msg.write(0x20, [0x10])
    read = i2c_msg.read(0x20, 4)
    bus.i2c_rdwr(write, read)  # repeated start: pointer, then 4 bytes
    assert bytes(read) == b"\xde\xad\xbe\xef"
    bus.i2c_rdwr(i2c_msg.write(0x20, [0x30, 1, 2, 3]))
    assert chip.regs[0x30:0x33] == b"\x01\x02\x03"
    assert chip.pointer == 0x30  # the first byte of a write is the register pointer


def test_i2c_rdwr_is_one_transfer() -> None:
    """A NACK from any addressed chip fails the transfer before any message runs."""
    chip = reg_chip()
    bus = SimBus(1, [chip])
    with pytest.raises(OSError) as e:
        bus.i2c_rdwr(i2c_msg.write(0x20, [0x40, 0x55]), i2c_msg.read(0x21, 1))
    assert e.value.errno == errno.EREMOTEIO
    assert chip.regs[0x40] == 0  # nothing was written


def test_smbus_methods_byte_order() -> None:
    chip = reg_chip()
    bus = SimBus(1, [chip])
    assert bus.read_byte_data(0x20, 0x10) == 0xDE
    assert bus.read_word_data(0x20, 0x10) == 0xADDE  # SMBus words are LSB first
    bus.write_word_data(0x20, 0x50, 0x1234)
    assert chip.regs[0x50:0x52] == b"\x34\x12"
    assert bus.read_i2c_block_data(0x20, 0x10, 3) == [0xDE, 0xAD, 0xBE]
    bus.write_i2c_block_data(0x20, 0x60, [9, 8])
    assert chip.regs[0x60:0x62] == b"\x09\x08"
    bus.write_byte_data(0x20, 0x70, 0xAA)
    # A plain read continues at the pointer; writes leave it on the register written.
    assert bus.read_byte(0x20) == 0xAA
    assert bus.read_byte(0x20) == 0x00  # reads auto-increment
    with pytest.raises(ValueError):
        bus.read_i2c_block_data(0x20, 0, 33)  # smbus2's own 32-byte limit
    with pytest.raises(ValueError):
        bus.write_i2c_block_data(0x20, 0, [0] * 33)


def test_nack_and_eio_errnos() -> None:
    chip = reg_chip()
    bus = SimBus(1, [chip])
    with pytest.raises(OSError) as e:
        bus.read_byte_data(0x21, 0)
    assert e.value.errno == errno.EREMOTEIO == 121
    chip.faults.eio_burst = 3
    failures = 0
    for _ in range(5):
        try:
            bus.write_quick(0x20)
        except OSError as exc:
            assert exc.errno == errno.EIO
            failures += 1
    assert failures == 3 and chip.faults.eio_burst == 0


def test_absent_until_then_present() -> None:
    clock = SimClock(0.0)
    chip = TMP102Chip(0x48, clock=clock, faults=Faults.from_config({"absent_for": "2s"}))
    bus = SimBus(1, [chip])
    with pytest.raises(OSError) as e:
        bus.write_quick(0x48)
    assert e.value.errno == errno.EREMOTEIO
    clock.fixed = 2.0
    bus.write_quick(0x48)


@pytest.mark.parametrize(
    ("faults", "message"),
    [({"explode": True}, "unknown fault"), ({"nack": "yes"}, "true or false"),
     ({"eio_burst": -1}, "eio_burst"), ({"eio_burst": True}, "eio_burst"),
     ({"absent_for": "soon"}, "duration")],
)
def test_fault_config_is_validated(faults: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Faults.from_config(faults)


def test_fault_config_values() -> None:
    f = Faults.from_config({"nack": False, "eio_burst": 4, "absent_for": "1.5s", "stuck": True,
                            "corrupt_crc": True, "slow_conversion": True})
    assert (f.nack, f.eio_burst, f.absent_until, f.stuck, f.corrupt_crc, f.slow_conversion) == (
        False, 4, 1.5, True, True, True)


@pytest.mark.parametrize(
    ("driver", "sim", "message"),
    [("tmp102", {"valuez": {}}, "unknown sim key"),
     ("tmp102", {"values": {"humidity_pct": 3}}, "no quantity"),
     ("tmp102", {"options": {"warp": 9}}, "options"),
     ("tmp102", {"values": {"temperature_c": {"sine": {"mean": 1}}}}, "sine"),
     ("tmp102", {"values": {"temperature_c": {"wobble": {}}}}, "unknown profile"),
     ("tmp102", ["not", "a", "mapping"], "mapping"),
     ("tmp102", {"faults": "nack"}, "faults: expected a mapping"),
     ("tmp102", {"values": [21.0]}, "values: expected a mapping"),
     ("nosuchchip", {}, "no model")],
)
def test_sim_block_is_validated(driver: str, sim: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate_sim(driver, 0x48, sim)  # type: ignore[arg-type]


def test_sim_typo_is_a_config_error_with_its_line() -> None:
    text = """gateway: {id: t, simulate: true}
devices:
  - name: probe
    driver: tmp102
    sim:
      faults: {absent_fo: 2s}
"""
    with pytest.raises(ConfigError) as e:
        parse_config(text, "gw.yaml")
    (problem,) = e.value.problems
    assert problem.path.startswith("devices.0.sim") and "absent_fo" in problem.message
    assert problem.line in (5, 6)


def test_profiles_from_sim_config() -> None:
    clock = SimClock(0.0)
    chip = make_chip("tmp102", 0x48, {"values": {"temperature_c": {"step": {"values": [1, 2, 3],
                                                                            "every": "10s"}}}},
                     clock, lively=False)
    bus = SimBus(1, [chip])
    seen = []
    for t in (0.0, 10.0, 25.0, 31.0):
        clock.fixed = t
        msb, lsb = bus.read_i2c_block_data(0x48, 0, 2)
        seen.append(((msb << 8) | lsb) >> 4)
    assert seen == [16, 32, 48, 16]  # 1, 2, 3, 1 °C at 0.0625 °C per count
    sine = make_chip("tmp102", 0x48, {"values": {"temperature_c": {"sine": {
        "mean": 20, "amplitude": 5, "period": "40s"}}}}, clock, lively=False)
    clock.fixed = 10.0
    assert sine.values_now()["temperature_c"] == pytest.approx(25.0)
    walk = make_chip("tmp102", 0x48, {"values": {"temperature_c": {"random_walk": {
        "start": 20, "step": 0.5, "min": 19, "max": 21, "seed": 3}}}}, clock, lively=False)
    clock.fixed = 1000.0
    assert 19.0 <= walk.values_now()["temperature_c"] <= 21.0


def test_lively_values_drift_but_pinned_ones_do_not() -> None:
    clock = SimClock(0.0)
    chip = make_chip("bme280", 0x76, {"values": {"pressure_hpa": 990.0}}, clock, seed="x")
    a = chip.values_now()
    clock.fixed = 75.0
    b = chip.values_now()
    assert a["pressure_hpa"] == b["pressure_hpa"] == 990.0
    assert a["temperature_c"] != b["temperature_c"]
