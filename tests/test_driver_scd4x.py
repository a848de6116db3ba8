"""SCD4x: datasheet vectors (§3.5.2, §3.7, §3.11), commands (§3.4 Table 9), the simulator, faults, config."""

from __future__ import annotations

import errno
import time
from pathlib import Path
from typing import NamedTuple

import pytest
from smbus2 import i2c_msg

from gateway.catalog import spec_for
from gateway.commands.scan import scan_bus
from gateway.config import ConfigError, parse_config
from gateway.config.model import I2CDevice
from gateway.drivers import ConversionTimeout, CrcError, NoNewData, crc8_sensirion
from gateway.drivers.scd4x import READY_MARGIN_S, SCD4x
from gateway.health import DeviceHealth
from gateway.homeassistant import Discovery
from gateway.readers.base import ReaderContext
from gateway.readers.i2c import I2CBuses, I2CReader
from gateway.reading import Reading
from hardware_sim.chips.scd4x import SCD4xChip, encode
from hardware_sim.i2c import Faults, SimBus, SimChip, SimClock, crc8_0x31, validate_sim
from tests.sensirion_support import crc_by_definition, words

ADDR = 0x62


# The datasheet's read_measurement example (§3.5.2): 500 ppm, 25 °C, 37 %RH, each word + CRC.
# Taken as quoted by an independent driver's tests (the page itself was not at hand); its
# three CRC bytes check out against §3.11 above, and its values against the formula.
DATASHEET_MEASUREMENT = bytes([0x01, 0xF4, 0x33, 0x66, 0x67, 0xA2, 0x5E, 0xB9, 0x3C])


def temperature(word: int) -> float:
    return -45 + 175 * word / 2**16  # §3.5.2


def humidity(word: int) -> float:
    return 100 * word / 2**16  # §3.5.2


class Scripted(SimChip):
    """Answers each command with a fixed reply; records commands (16 bits) and nothing else."""

    def __init__(self, measurement: bytes, ready: list[int] | None = None) -> None:
        super().__init__(ADDR, clock=SimClock(0.0))
        self.measurement = measurement
        self.ready = ready if ready is not None else [0x8006]  # one word per status read; last repeats
        self.commands: list[int] = []

    def write(self, data: bytes) -> None:
        assert len(data) == 2, "commands are 16 bits, MSB first"
        self.commands.append((data[0] << 8) | data[1])

    def read(self, n: int) -> bytes:
        cmd = self.commands[-1]
        if cmd == 0x3682:
            reply = words(0xF896, 0x9F07, 0x3BBE)
        elif cmd == 0xE4B8:
            reply = words(self.ready.pop(0) if len(self.ready) > 1 else self.ready[0])
        elif cmd == 0xEC05:
            reply = self.measurement
        else:
            raise AssertionError(f"read after command 0x{cmd:04x}")
        return reply[:n]


class Clock:
    """A simulator clock that the driver's sleeps advance; records every sleep."""

    def __init__(self) -> None:
        self.sim = SimClock(0.0)
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        assert seconds > 0, "a sleep of 0 would make a busy-wait"
        self.sleeps.append(seconds)
        assert self.sim.fixed is not None
        self.sim.fixed += seconds

    @property
    def now(self) -> float:
        assert self.sim.fixed is not None
        return self.sim.fixed

    def advance(self, seconds: float) -> None:
        assert self.sim.fixed is not None
        self.sim.fixed += seconds


def no_sleep(_: float) -> None:
    pass


# -- datasheet vectors ----------------------------------------------------------


def test_crc_datasheet_vectors() -> None:
    # §3.11: CRC(0xBEEF) = 0x92; §3.7 examples: 0x01E0 -> 0xB4, 0x7FCE -> 0x7B, 0x0001 -> 0xB0,
    # 0x0000 -> 0x81 (perform_forced_recalibration, set/get_automatic_self_calibration_enabled).
    for word, expected in ((0xBEEF, 0x92), (0x01E0, 0xB4), (0x7FCE, 0x7B), (0x0001, 0xB0),
                           (0x0000, 0x81)):
        pair = word.to_bytes(2, "big")
        assert crc_by_definition(pair) == expected  # the test's own reference implementation
        assert crc8_sensirion(pair) == expected  # the driver's
        assert crc8_0x31(pair) == expected  # the chip model's


def test_read_measurement_datasheet_example() -> None:
    chip = Scripted(DATASHEET_MEASUREMENT)
    got = SCD4x(SimBus(1, [chip]), sleep=no_sleep).read()
    assert got["co2_ppm"] == 500.0
    assert got["temperature_c"] == pytest.approx(temperature(0x6667), abs=0.001)
    assert got["humidity_pct"] == pytest.approx(humidity(0x5EB9), abs=0.001)
    assert (round(got["temperature_c"]), round(got["humidity_pct"])) == (25, 37)  # as the example says
    assert chip.commands[-2:] == [0xE4B8, 0xEC05]  # data ready, then one read_measurement
    assert set(got) == set(spec_for("scd4x").quantities)


def test_model_encodes_the_datasheet_example() -> None:
    """The chip model sends exactly the datasheet's bytes for the example's values."""
    clock = Clock()
    chip = SCD4xChip(ADDR, clock=clock.sim, values={
        "co2_ppm": 500.0, "temperature_c": temperature(0x6667), "humidity_pct": humidity(0x5EB9)})
    bus = SimBus(1, [chip])
    bus.i2c_rdwr(i2c_msg.write(ADDR, [0x21, 0xB1]))
    clock.advance(5.0)
    bus.i2c_rdwr(i2c_msg.write(ADDR, [0xEC, 0x05]))
    msg = i2c_msg.read(ADDR, 9)
    bus.i2c_rdwr(msg)
    assert bytes(msg) == DATASHEET_MEASUREMENT


@pytest.mark.parametrize(("co2", "s_t", "s_rh"),
                         [(0, 0, 0), (40000, 0xFFFF, 0xFFFF), (412, 0x5C28, 0x8000), (1234, 0x1000, 0xF000)])
def test_conversion_section_3_5_2(co2: int, s_t: int, s_rh: int) -> None:
    got = SCD4x(SimBus(1, [Scripted(words(co2, s_t, s_rh))]), sleep=no_sleep).read()
    assert got["co2_ppm"] == co2
    assert got["temperature_c"] == pytest.approx(temperature(s_t), abs=0.001)
    assert got["humidity_pct"] == pytest.approx(humidity(s_rh), abs=0.001)


@pytest.mark.parametrize("corrupt_byte", [2, 5, 8, 0, 4, 7])
def test_a_bad_crc_in_any_word_is_an_error(corrupt_byte: int) -> None:
    bad = bytearray(DATASHEET_MEASUREMENT)
    bad[corrupt_byte] ^= 0x01
    with pytest.raises(CrcError, match=f"word {corrupt_byte // 3}"):
        SCD4x(SimBus(1, [Scripted(bytes(bad))]), sleep=no_sleep).read()


def test_bad_crc_on_data_ready_and_serial_too() -> None:
    class BadCrcAfter(Scripted):
        def __init__(self, bad: int) -> None:
            super().__init__(DATASHEET_MEASUREMENT)
            self.bad = bad

        def read(self, n: int) -> bytes:
            reply = bytearray(super().read(n))
            if self.commands[-1] == self.bad:
                reply[2] ^= 0xFF
            return bytes(reply)

    with pytest.raises(CrcError, match="serial number"):
        SCD4x(SimBus(1, [BadCrcAfter(0x3682)]), sleep=no_sleep)
    drv = SCD4x(SimBus(1, [BadCrcAfter(0xE4B8)]), sleep=no_sleep)
    with pytest.raises(CrcError, match="data-ready"):
        drv.read()


def test_data_ready_is_the_low_11_bits() -> None:
    """§3.8.2: 0x8000 and 0x0800 are 'not ready'; any of bits 10..0 set is 'ready'."""
    chip = Scripted(DATASHEET_MEASUREMENT, ready=[0x8000, 0x0800, 0xF800, 0x0001])
    drv = SCD4x(SimBus(1, [chip]), sleep=no_sleep, clock=lambda: 0.0)
    start = len(chip.commands)
    for _ in range(3):
        with pytest.raises(NoNewData):
            drv.read()
    assert drv.read()["co2_ppm"] == 500.0
    assert chip.commands[start:] == [0xE4B8] * 4 + [0xEC05]
    for word in (0x07FF, 0x0400, 0x8001):
        assert SCD4x(SimBus(1, [Scripted(DATASHEET_MEASUREMENT, ready=[word])]), sleep=no_sleep).data_ready()


# -- commands and timing ----------------------------------------------------------


@pytest.mark.parametrize(("mode", "start"), [("periodic", 0x21B1), ("low_power", 0x21AC)])
def test_init_stops_waits_500ms_reads_serial_then_starts(mode: str, start: int) -> None:
    chip = Scripted(DATASHEET_MEASUREMENT)
    events: list[object] = []
    original = chip.write

    def write(data: bytes) -> None:
        original(data)
        events.append(chip.commands[-1])

    chip.write = write  # type: ignore[method-assign]
    drv = SCD4x(SimBus(1, [chip]), mode=mode, sleep=events.append)  # type: ignore[arg-type]
    assert events[:3] == [0x3F86, 0.5, 0x3682]  # stop, 500 ms (§3.5.3), serial number
    assert events[-1] == start and chip.commands == [0x3F86, 0x3682, start]
    assert drv.serial_number == 0xF8969F073BBE


def test_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="periodic or low_power"):
        SCD4x(SimBus(1, [Scripted(DATASHEET_MEASUREMENT)]), mode="fast", sleep=no_sleep)  # type: ignore[arg-type]


@pytest.mark.parametrize(("mode", "period"), [("periodic", 5.0), ("low_power", 30.0)])
def test_through_the_simulator(mode: str, period: float) -> None:
    clock = Clock()
    chip = SCD4xChip(ADDR, clock=clock.sim,
                     values={"co2_ppm": 812.0, "temperature_c": 23.4, "humidity_pct": 51.2})
    drv = SCD4x(SimBus(1, [chip]), mode=mode, sleep=clock.sleep,  # type: ignore[arg-type]
                clock=lambda: clock.now)
    # Right after the start nothing is measured yet: the poll is skipped at once (one
    # 1 ms status read), not waited out while holding the bus.
    before = len(clock.sleeps)
    with pytest.raises(NoNewData, match="no new measurement yet") as nothing:
        drv.read()
    assert clock.sleeps[before:] == [0.001]
    # ... and the reader is told when the first is due: one period after the start.
    assert nothing.value.retry_in == pytest.approx(period + READY_MARGIN_S, abs=0.01)
    clock.advance(period * 0.6)
    with pytest.raises(NoNewData) as nothing:
        drv.read()
    assert nothing.value.retry_in == pytest.approx(period * 0.4 + READY_MARGIN_S, abs=0.01)
    clock.advance(period * 0.42)  # the first measurement comes one period after the start
    got = drv.read()
    assert got["co2_ppm"] == 812.0
    assert got["temperature_c"] == pytest.approx(23.4, abs=175 / 2**16)
    assert got["humidity_pct"] == pytest.approx(51.2, abs=100 / 2**16)
    # Polled at the chip's period: the newest measurement is there.
    clock.advance(period)
    before = len(clock.sleeps)
    chip.set_value("co2_ppm", 1500.0)
    assert drv.read()["co2_ppm"] == 1500.0
    assert clock.sleeps[before:] == [0.001, 0.001]  # data ready + read_measurement, 1 ms each
    # Polled again at once: each measurement is read only once, so there is nothing new.
    with pytest.raises(NoNewData) as nothing:
        drv.read()
    assert nothing.value.retry_in == pytest.approx(period + READY_MARGIN_S, abs=0.01)
    clock.advance(period)
    assert drv.read()["co2_ppm"] == 1500.0
    assert chip.measurements == 3


def test_sim_refuses_read_measurement_before_start() -> None:
    clock = Clock()
    bus = SimBus(1, [SCD4xChip(ADDR, clock=clock.sim)])
    bus.i2c_rdwr(i2c_msg.write(ADDR, [0xEC, 0x05]))  # the command itself is acknowledged
    clock.advance(60.0)
    with pytest.raises(OSError) as e:
        bus.i2c_rdwr(i2c_msg.read(ADDR, 9))  # nothing measured: the read is NACKed (§3.5.2)
    assert e.value.errno == errno.EREMOTEIO


def test_sim_chip_left_running_needs_a_stop_and_500ms() -> None:
    clock = Clock()
    chip = SCD4xChip(ADDR, clock=clock.sim)
    chip.start()  # a previous process left it measuring
    bus = SimBus(1, [chip])
    for idle_only in ([0x36, 0x82], [0x21, 0xB1], [0x36, 0x46]):  # serial, start, reinit (Table 9)
        with pytest.raises(OSError):
            bus.i2c_rdwr(i2c_msg.write(ADDR, idle_only))
    bus.i2c_rdwr(i2c_msg.write(ADDR, [0x3F, 0x86]))
    clock.advance(0.4)
    with pytest.raises(OSError):  # still executing the stop
        bus.i2c_rdwr(i2c_msg.write(ADDR, [0x36, 0x82]))
    clock.advance(0.1)
    bus.i2c_rdwr(i2c_msg.write(ADDR, [0x36, 0x82]))
    # ... and the driver copes with such a chip on its own.
    drv = SCD4x(bus, sleep=clock.sleep, clock=lambda: clock.now)
    clock.advance(5.1)
    assert drv.read()["co2_ppm"] == pytest.approx(600.0, abs=5.0)


def test_sim_single_shot_is_scd41_only() -> None:
    clock = Clock()
    chip = SCD4xChip(ADDR, clock=clock.sim, values={"co2_ppm": 700.0})
    bus = SimBus(1, [chip])
    bus.i2c_rdwr(i2c_msg.write(ADDR, [0x21, 0x9D]))
    clock.advance(4.9)
    with pytest.raises(OSError):  # busy for its 5000 ms (Table 9)
        bus.i2c_rdwr(i2c_msg.write(ADDR, [0xE4, 0xB8]))
    clock.advance(0.1)
    bus.i2c_rdwr(i2c_msg.write(ADDR, [0xEC, 0x05]))
    msg = i2c_msg.read(ADDR, 9)
    bus.i2c_rdwr(msg)
    assert bytes(msg)[:3] == words(700)
    scd40 = SCD4xChip(ADDR, clock=clock.sim, variant="scd40")
    with pytest.raises(OSError):
        SimBus(1, [scd40]).i2c_rdwr(i2c_msg.write(ADDR, [0x21, 0x9D]))


def test_sim_encode_clamps_to_the_output_range() -> None:
    assert encode(-5.0, -60.0, -1.0) == (0, 0, 0)
    assert encode(99999.0, 200.0, 150.0) == (40000, 0xFFFF, 0xFFFF)


def test_sim_options_are_validated() -> None:
    validate_sim("scd4x", ADDR, {"options": {"variant": "scd40"}})
    with pytest.raises(ValueError, match="variant"):
        validate_sim("scd4x", ADDR, {"options": {"variant": "scd42"}})
    with pytest.raises(ValueError, match="no quantity"):
        validate_sim("scd4x", ADDR, {"values": {"pressure_hpa": 1000}})


# -- faults -------------------------------------------------------------------------


def test_simulated_faults() -> None:
    clock = Clock()
    chip = SCD4xChip(ADDR, clock=clock.sim, values={"co2_ppm": 420.0})
    drv = SCD4x(SimBus(1, [chip]), sleep=clock.sleep, clock=lambda: clock.now)
    clock.advance(5.1)
    assert drv.read()["co2_ppm"] == 420.0
    # The chip stops producing: polls with nothing new are skipped, until nothing has
    # come for 2.5 periods, which is a fault.
    chip.faults = Faults(slow_conversion=True)
    skipped = 0
    with pytest.raises(ConversionTimeout, match="no new measurement in"):
        while skipped < 10:
            clock.advance(5.0)
            try:
                drv.read()
            except NoNewData:
                skipped += 1
    assert skipped == 2  # 5 and 10 s quiet are skips; 15 s is more than 2.5 periods
    chip.faults = Faults(corrupt_crc=True)
    with pytest.raises(CrcError):
        drv.read()
    chip.faults = Faults(eio_burst=1)
    with pytest.raises(OSError) as e:
        drv.read()
    assert e.value.errno == errno.EIO
    chip.faults = Faults(nack=True)
    with pytest.raises(OSError) as e:
        drv.read()
    assert e.value.errno == errno.EREMOTEIO
    # Plugged back in, the chip is idle again (power cycle), so the old driver sees
    # nothing new, for long: a fault. A new driver, as the reader makes after an
    # error, starts the chip again and reads.
    chip.faults = Faults()
    with pytest.raises(ConversionTimeout):
        drv.read()
    again = SCD4x(SimBus(1, [chip]), sleep=clock.sleep, clock=lambda: clock.now)
    clock.advance(5.1)
    assert again.read()["co2_ppm"] == 420.0


def test_stuck_values() -> None:
    clock = Clock()
    chip = SCD4xChip(ADDR, clock=clock.sim, values={"co2_ppm": {"step": {"values": [500, 900],
                                                                          "every": "8s"}}})
    drv = SCD4x(SimBus(1, [chip]), sleep=clock.sleep, clock=lambda: clock.now)
    clock.advance(5.1)
    assert drv.read()["co2_ppm"] == 500.0  # t ~ 5.6 s
    chip.faults = Faults(stuck=True)
    clock.advance(5.0)
    assert drv.read()["co2_ppm"] == 500.0  # t ~ 10.6 s: the profile is at 900 by now
    chip.faults = Faults()
    clock.advance(5.0)
    assert drv.read()["co2_ppm"] == 900.0  # the next measurement, t ~ 15.6 s


class Co2Reader(NamedTuple):
    reader: I2CReader
    ahead: list[float]  # how far the chip's clock runs ahead of real time (the reader's)
    health: DeviceHealth
    got: list[Reading]
    buses: I2CBuses


def co2_reader(interval: int, co2_ppm: float) -> Co2Reader:
    """A simulated SCD4x behind the real I2C reader, its clock settable."""
    ahead = [0.0]
    chip = SCD4xChip(ADDR, clock=lambda: time.monotonic() + ahead[0], values={"co2_ppm": co2_ppm})
    buses = I2CBuses(lambda n: SimBus(n, [chip]))
    spec = spec_for("scd4x")
    cfg = spec.config.model_validate({"name": "co2", "driver": "scd4x", "interval": interval})
    assert isinstance(cfg, I2CDevice)
    health = DeviceHealth("co2", "scd4x")
    got: list[Reading] = []

    def put(r: Reading) -> bool:
        got.append(r)
        return True

    reader = I2CReader(cfg, spec, ReaderContext(put=put, health=health), buses)
    return Co2Reader(reader, ahead, health, got, buses)


def test_the_reader_skips_a_poll_with_nothing_new_without_a_fault() -> None:
    """Through the real I2C reader: the first poll after the start has nothing yet;
    it is neither an error nor a reading, and the next poll is at the next slot."""
    reader, ahead, health, got, buses = co2_reader(5, 640.0)
    try:
        due = reader.poll_once()  # opens the device (starts the chip): nothing new yet
        assert reader.opened and got == []
        assert health.total_errors == 0 and health.state != "failing"
        assert due == reader.next_slot(time.monotonic())  # the next slot, not a backoff
        ahead[0] = 5.1  # one measurement period later, for the chip
        reader.poll_once()
        assert [r.values["co2_ppm"] for r in got] == [640.0]
        assert health.total_errors == 0 and health.state == "ok"
    finally:
        buses.close()


def test_after_nothing_new_the_reader_asks_again_when_the_chip_is_due() -> None:
    """Polled every 60 s, the chip's first measurement (5 s after the start) is read 5 s
    after the start, not at the next slot, up to 60 s later; then the slots again."""
    reader, ahead, health, got, buses = co2_reader(60, 700.0)
    reader.next_slot = lambda now: now + 60.0  # type: ignore[method-assign]  # a slot far off
    try:
        t0 = time.monotonic()
        due = reader.poll_once()  # starts the chip: nothing yet
        t1 = time.monotonic()
        assert got == [] and health.total_errors == 0
        assert t0 + 5.0 <= due <= t1 + 5.0 + READY_MARGIN_S  # when the chip is due
        ahead[0] = 5.0 + READY_MARGIN_S  # that time, for the chip
        t2 = time.monotonic()
        due = reader.poll_once()
        assert [r.values["co2_ppm"] for r in got] == [700.0]
        assert due >= t2 + 60.0  # a reading: the next slot again
        assert health.total_errors == 0 and health.state == "ok"
    finally:
        buses.close()


# -- config, discovery, scan ------------------------------------------------------------

CONFIG = """\
gateway: {{id: gh-1}}
devices:
  - name: co2
    driver: scd4x
{extra}"""


def problems(extra: str) -> list[str]:
    try:
        parse_config(CONFIG.format(extra=extra), "gw.yaml")
    except ConfigError as exc:
        return [str(p) for p in exc.problems]
    return []


def test_interval_must_not_be_shorter_than_the_mode_period() -> None:
    assert problems("    interval: 2s\n") == [
        "gw.yaml:5: devices.0.interval: shorter than the 5 s measurement period of mode periodic; "
        "use 5s or more (got 2.0)"]
    assert problems("    mode: low_power\n    interval: 10s\n") == [
        "gw.yaml:6: devices.0.interval: shorter than the 30 s measurement period of mode low_power; "
        "use 30s or more (got 10.0)"]
    # The default interval (5 s) is too short for low_power: reported on the device's line.
    (only,) = problems("    mode: low_power\n")
    assert only.startswith("gw.yaml:3: devices.0.interval: shorter than the 30 s")
    assert problems("") == []  # periodic with the default 5 s
    assert problems("    interval: 5s\n") == []
    assert problems("    mode: low_power\n    interval: 1m\n") == []
    (bad_mode,) = problems("    mode: turbo\n")
    assert bad_mode.startswith("gw.yaml:5: devices.0.mode: must be one of")


def test_config_builds_the_driver_through_the_catalog() -> None:
    cfg = parse_config(CONFIG.format(extra="    mode: low_power\n    interval: 30s\n"), "gw.yaml")
    (dev,) = cfg.devices
    spec = spec_for("scd4x")
    assert spec.make_driver is not None
    assert dev.address == 0x62  # type: ignore[attr-defined]
    chip = SCD4xChip(ADDR, clock=SimClock())  # real time: the driver really waits 500 ms after stop
    bus = SimBus(1, [chip])
    drv = spec.make_driver(bus, dev)
    assert isinstance(drv, SCD4x) and drv.mode == "low_power"
    assert chip.running == 0x21AC


def test_home_assistant_sees_a_carbon_dioxide_sensor(tmp_path: Path) -> None:
    cfg = parse_config("homeassistant: {discovery: true}\n" + CONFIG.format(extra=""), "gw.yaml")
    anns = {a.topic.split("/")[-2]: a.payload for a in Discovery(cfg, record=tmp_path / "r").announcements()}
    assert anns["co2_ppm"]["device_class"] == "carbon_dioxide"
    assert anns["co2_ppm"]["unit_of_measurement"] == "ppm"
    assert anns["temperature_c"]["device_class"] == "temperature"
    assert anns["humidity_pct"]["device_class"] == "humidity"


def test_scan_names_it_by_address() -> None:
    (found,) = scan_bus(SimBus(1, [SCD4xChip(ADDR, clock=SimClock(0.0))]))
    assert (found.address, found.chips, found.by) == (0x62, ["scd4x"], "address")
