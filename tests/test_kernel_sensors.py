"""Kernel-driven sensors: 1-Wire (w1_therm), IIO, hwmon, the Pi's health, GPIO contacts and pulses.

Facts are checked against their sources' own examples (cited per test); the sysfs
trees are the simulator's (`hardware_sim.sysfs`), laid out as the kernel lays them out.
"""

from __future__ import annotations

import errno
import logging
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from gateway.drivers import CrcError
from gateway.drivers.crc import crc8_maxim
from gateway.drivers.gpio_input import ContactDebouncer, Edge, PulseCounter
from gateway.drivers.hwmon import key_for, read_chip
from gateway.drivers.iio import DHT_ROUTINE, IioDevice, channel_key
from gateway.drivers.pi_health import decode_throttled, parse_throttled, read_health
from gateway.drivers.w1_therm import PowerOnValue, ProbeMissing, W1Bus, parse_w1_slave
from gateway.health import DeviceHealth
from gateway.readers.base import ReaderContext
from gateway.readers.kernel import GpioReader, KernelReader
from gateway.reading import Reading
from hardware_sim.gpio import SimLine
from hardware_sim.sysfs import scratchpad_line
from tests.support import wait_until


# -- 1-Wire ---------------------------------------------------------------------------------
def test_crc8_maxim_worked_example_of_application_note_27() -> None:
    # Maxim AN27, "Understanding and Using Cyclic Redundancy Checks with Maxim 1-Wire and
    # iButton Products", Figure 3/Table 2: ROM 02 1C B8 01 00 00 00 has CRC A2; the whole
    # eight bytes including the CRC give 0.
    rom = bytes.fromhex("021CB801000000")
    assert crc8_maxim(rom) == 0xA2
    assert crc8_maxim(rom + b"\xa2") == 0


def test_w1_slave_of_a_real_probe() -> None:
    # A DS18B20's w1_slave as w1_therm prints it (w1_therm.rst: nine bytes, crc, YES; then t=).
    text = "72 01 4b 46 7f ff 0e 10 57 : crc=57 YES\n72 01 4b 46 7f ff 0e 10 57 t=23125\n"
    assert parse_w1_slave(text, 0x28) == 23.125


@pytest.mark.parametrize(("celsius", "raw"), [
    # DS18B20 datasheet, Table 1 (Temperature/Data Relationship), 12-bit resolution.
    (125.0, 0x07D0), (85.0, 0x0550), (25.0625, 0x0191), (10.125, 0x00A2), (0.5, 0x0008),
    (0.0, 0x0000), (-0.5, 0xFFF8), (-10.125, 0xFF5E), (-25.0625, 0xFE6F), (-55.0, 0xFC90),
])
def test_scratchpad_temperatures_of_the_datasheet_table(celsius: float, raw: int) -> None:
    line = scratchpad_line(celsius)
    first = bytes(int(b, 16) for b in line.split(":")[0].split())
    assert first[0] | first[1] << 8 == raw
    if raw == 0x0550:
        with pytest.raises(PowerOnValue):  # the power-on value is a fault, not a reading
            parse_w1_slave(line, 0x28)
    else:
        assert parse_w1_slave(line, 0x28) == celsius


def test_w1_slave_faults() -> None:
    with pytest.raises(CrcError):
        parse_w1_slave(scratchpad_line(21.5, corrupt=True), 0x28)
    with pytest.raises(PowerOnValue):
        parse_w1_slave(scratchpad_line(0.0, power_on=True), 0x28)
    # The kernel said YES but the bytes do not check: our own CRC catches it.
    good = scratchpad_line(21.5)
    forged = good.replace(good[:2], f"{int(good[:2], 16) ^ 1:02x}", 2)
    with pytest.raises(CrcError):
        parse_w1_slave(forged, 0x28)
    # t= that disagrees with the scratchpad.
    with pytest.raises(Exception, match="does not match"):
        parse_w1_slave(good.replace("t=21500", "t=99000"), 0x28)


def _probe_tree(root: Path, probes: dict[str, float], bulk: bool = True) -> Path:
    w1 = root / "sys/bus/w1/devices"
    if bulk:
        (w1 / "w1_bus_master1").mkdir(parents=True)
        (w1 / "w1_bus_master1/therm_bulk_read").write_text("0\n")
    for pid, value in probes.items():
        (w1 / pid).mkdir(parents=True)
        (w1 / pid / "w1_slave").write_text(scratchpad_line(value))
    (w1 / "00-000000000000").mkdir(parents=True)  # not a thermometer family: ignored
    return w1


def test_bus_lists_probes_bulk_converts_and_reports_a_vanished_probe(tmp_path: Path) -> None:
    w1 = _probe_tree(tmp_path, {"28-0316a2795bff": 19.5, "10-000802b7c1a4": 22.0})
    bus = W1Bus(tmp_path)
    assert bus.probe_ids() == ["10-000802b7c1a4", "28-0316a2795bff"]
    assert bus.bulk_convert() is True
    assert (w1 / "w1_bus_master1/therm_bulk_read").read_text() == "trigger\n"
    assert bus.read("28-0316a2795bff") == 19.5
    (w1 / "28-0316a2795bff/w1_slave").unlink()
    (w1 / "28-0316a2795bff").rmdir()
    with pytest.raises(ProbeMissing):
        bus.read("28-0316a2795bff")
    with pytest.raises(FileNotFoundError, match="dtoverlay=w1-gpio"):
        W1Bus(tmp_path / "nowhere").probe_ids()


# -- IIO and hwmon ----------------------------------------------------------------------------
def test_iio_channel_names_and_units() -> None:
    # sysfs-bus-iio: in_temp_input in milli °C, in_humidityrelative_input in milli percent,
    # in_pressure in kPa, in_voltageY in mV, in_concentration in percent.
    assert channel_key("temp", "", None) is not None
    assert channel_key("temp", "", None)[0] == "temperature_c"  # type: ignore[index]
    assert channel_key("voltage", "1", None)[0] == "voltage1_v"  # type: ignore[index]
    assert channel_key("temp", "", "object")[0] == "object_temperature_c"  # type: ignore[index]
    assert channel_key("concentration", "", "co2")[0] == "co2_ppm"  # type: ignore[index]
    assert channel_key("accel", "", "x") is None  # no quantity key: left out


def test_iio_processed_and_raw_scaled_channels(tmp_path: Path) -> None:
    d = tmp_path / "iio:device0"
    d.mkdir()
    files = {
        "name": "bme280\n",
        "in_temp_input": "21500\n",  # 21.5 °C
        "in_humidityrelative_input": "48250\n",  # 48.25 %
        "in_pressure_input": "100.512\n",  # kPa -> 1005.12 hPa
        # processed = (raw + offset) * scale (sysfs-bus-iio, in_voltageY_offset/_scale)
        "in_voltage0_raw": "1000\n", "in_voltage_scale": "0.125\n",  # 125 mV
        "in_voltage1_raw": "200\n", "in_voltage1_offset": "-100\n", "in_voltage1_scale": "2\n",
        "in_accel_x_raw": "5\n",
    }
    for name, text in files.items():
        (d / name).write_text(text)
    assert IioDevice(d).read() == {
        "temperature_c": 21.5, "humidity_pct": 48.25, "pressure_hpa": 1005.12,
        "voltage0_v": 0.125, "voltage1_v": 0.2,
    }


def test_hwmon_units_and_labels(tmp_path: Path) -> None:
    # Documentation/hwmon/sysfs-interface.rst: temp in m°C, in in mV, curr in mA, power in µW.
    d = tmp_path / "hwmon3"
    d.mkdir()
    for name, text in {"name": "ina219\n", "in0_input": "12000\n", "in1_input": "35\n",
                       "curr1_input": "250\n", "power1_input": "3000000\n",
                       "temp1_input": "45123\n", "temp2_input": "40000\n",
                       "temp2_label": "Board Edge\n",
                       "fan1_input": "1200\n"}.items():
        (d / name).write_text(text)
    assert read_chip(d) == {
        "voltage_v": 12.0, "voltage1_v": 0.035, "current_a": 0.25, "power_w": 3.0,
        "temperature_c": 45.123, "board_edge_temperature_c": 40.0, "fan_rpm": 1200.0,
    }
    assert key_for("temp", 1, None, 1) == "temperature_c"


# -- the Pi's health ---------------------------------------------------------------------------
def test_throttled_bits_as_the_pi_documentation_lists_them() -> None:
    # Raspberry Pi documentation, "vcgencmd get_throttled": 0x50005 = under-voltage now (bit 0),
    # throttled now (bit 2), under-voltage occurred (16), throttling occurred (18).
    flags = decode_throttled(parse_throttled("throttled=0x50005"))
    assert {k for k, v in flags.items() if v} == {
        "under_voltage", "throttled", "under_voltage_since_boot", "throttled_since_boot"}
    assert parse_throttled("50005\n") == 0x50005
    assert not any(decode_throttled(0).values())
    hot = decode_throttled(0x80008)
    assert hot["soft_temp_limit"] and hot["soft_temp_limit_since_boot"]


def test_pi_health_reading_and_missing_files(tmp_path: Path) -> None:
    (tmp_path / "sys/class/thermal/thermal_zone0").mkdir(parents=True)
    (tmp_path / "sys/class/thermal/thermal_zone0/temp").write_text("48312\n")
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/meminfo").write_text("MemTotal: 100 kB\nMemAvailable:    2048000 kB\n")
    (tmp_path / "proc/loadavg").write_text("0.42 0.3 0.2 1/100 99\n")
    values = read_health(tmp_path, tmp_path)
    assert values["soc_temperature_c"] == 48.312
    assert values["memory_available_mb"] == 2000.0
    assert values["load_1m"] == 0.42
    assert isinstance(values["disk_free_mb"], float) and values["disk_free_mb"] > 0
    assert "under_voltage" not in values  # no firmware file (not a Pi): left out, not false


# -- GPIO: debouncing and counting --------------------------------------------------------------
def _press(t_ms: float, bounce: int, rising: bool = True) -> list[Edge]:
    t = int(t_ms * 1e6)
    out = [Edge(rising, t)]
    for i in range(bounce):
        out += [Edge(not rising, t + (2 * i + 1) * 200_000), Edge(rising, t + (2 * i + 2) * 200_000)]
    return out


@pytest.mark.parametrize(("rate_hz", "debounce_ms", "bounce"), [
    (1.0, 20.0, 5),  # a rain gauge's reed switch
    (100.0, 1.0, 3),  # a cup anemometer at a gale
])
def test_pulse_counter_counts_bouncing_pulses_exactly(
    rate_hz: float, debounce_ms: float, bounce: int
) -> None:
    counter = PulseCounter(debounce_ms / 1000, rising=True, total=1000)
    period = 1000.0 / rate_hz
    for k in range(250):
        counter.feed(_press(k * period, bounce) + _press(k * period + period / 2, bounce, rising=False))
    assert counter.take() == 250
    assert counter.total == 1250  # a total restored from disk goes on, never resets
    assert counter.bounces == 2 * 250 * bounce
    assert counter.take() == 0


def test_contact_settles_only_after_the_line_is_quiet() -> None:
    c = ContactDebouncer(0.02)
    assert c.settle(False, 0) is True  # the initial state
    c.feed(_press(100.0, 4))
    assert c.settle_at() == int(100.0e6) + 8 * 200_000 + int(0.02e9)
    assert c.settle(True, int(101e6)) is False  # still bouncing: not sampled
    assert c.settle(True, int(130e6)) is True
    assert c.state is True and c.settle_at() is None


# -- readers ------------------------------------------------------------------------------------
def _ctx(name: str, got: list[Reading]) -> ReaderContext:
    def put(r: Reading) -> bool:
        got.append(r)
        return True

    return ReaderContext(put=put, health=DeviceHealth(name, "x"))


def test_dht_routine_errors_are_retried_without_flooding_the_log(caplog: pytest.LogCaptureFixture) -> None:
    got: list[Reading] = []
    ctx = _ctx("dht", got)
    calls = {"n": 0}

    def flaky() -> dict[str, Any]:
        calls["n"] += 1
        if calls["n"] % 3:  # two of three reads fail, as a DHT on a busy Pi may
            raise OSError(errno.EIO, "Input/output error")
        return {"temperature_c": 21.0}

    reader = KernelReader("dht", ctx, 0.01, flaky, routine=DHT_ROUTINE, retries=3, retry_delay=0.001)
    with caplog.at_level(logging.INFO):
        for _ in range(10):
            reader.poll_once()
    assert len(got) == 10 and ctx.health.total_errors == 0
    assert ctx.health.counters["retried_reads"] == 20
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    # A non-routine error is not retried.
    reader.read = lambda: (_ for _ in ()).throw(OSError(errno.ENOENT, "gone"))
    reader.poll_once()
    assert ctx.health.state == "failing" and ctx.health.counters["retried_reads"] == 20


def _run_gpio(reader: GpioReader) -> threading.Thread:
    reader.start()
    return reader._thread  # type: ignore[return-value]


@pytest.mark.parametrize(("rate_hz", "debounce", "presses"), [(20.0, 0.02, 8), (100.0, 0.001, 150)])
def test_gpio_pulse_counter_through_a_simulated_bouncing_line(
    tmp_path: Path, rate_hz: float, debounce: float, presses: int
) -> None:
    line = SimLine("rain", rate_hz=rate_hz, bounce=4, presses=presses)
    got: list[Reading] = []
    state = tmp_path / "rain.pulses"
    state.write_text("500\n")  # the total of an earlier run
    reader = GpioReader("rain", _ctx("rain", got), lambda: line, interval=0.1, mode="counter",
                        debounce=debounce, state_file=state, per_pulse=0.2794, amount_key="rain_mm",
                        total_key="rain_total_mm")
    _run_gpio(reader)
    try:
        assert wait_until(lambda: line.presses == presses and bool(got) and
                          got[-1].values["pulses_total"] == 500 + presses, timeout=60)
        # Every edge was seen: make and break of each press bounced 4 times.
        assert wait_until(lambda: reader.counter.bounces == presses * 4 * 2, timeout=30)
    finally:
        reader.stop()
        assert reader.join(10)
        line.shutdown()
    assert sum(r.values["pulses"] for r in got) == presses
    totals = [r.values["pulses_total"] for r in got]
    assert totals == sorted(totals) and totals[0] >= 500
    assert state.read_text().strip() == str(500 + presses)
    last = got[-1].values
    assert last["rain_total_mm"] == pytest.approx((500 + presses) * 0.2794)


def test_gpio_contact_publishes_each_debounced_change(tmp_path: Path) -> None:
    line = SimLine("door", rate_hz=10.0, bounce=5, presses=6, contact=True)
    got: list[Reading] = []
    reader = GpioReader("door", _ctx("door", got), lambda: line, interval=60.0, mode="contact",
                        debounce=0.01)
    _run_gpio(reader)

    def changes() -> list[bool]:
        # The state is also published on the `interval` grid (every whole minute of the
        # monotonic clock), which may fall inside this test: a repeat, not a change. A
        # published bounce would be a change (a True, False, True for one press).
        states = [r.values["closed"] for r in list(got)]
        return [s for i, s in enumerate(states) if i == 0 or s != states[i - 1]]

    try:
        assert wait_until(lambda: line.presses == 6 and len(changes()) >= 7, timeout=30)
        time.sleep(0.05)  # nothing more may come: six changes, no bounce published
    finally:
        reader.stop()
        assert reader.join(10)
        line.shutdown()
    assert changes() == [False, True, False, True, False, True, False]
    assert len(got) <= 7 + 1  # at most one grid repeat in the seconds this takes


def test_check_refuses_gpio_devices_without_the_gpio_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gateway.config.checks as checks
    from gateway.config import parse_config

    text = (f"gateway: {{id: g}}\nbuffer: {{path: {tmp_path}/s.db}}\ndevices:\n"
            "  - {name: rain, driver: pulse_counter, line: 27}\n")
    monkeypatch.setattr(checks, "_importable", lambda module: module != "gpiod")
    path = tmp_path / "gw.yaml"
    path.write_text(text)
    problems = [str(p) for p in checks.run_checks(parse_config(text, name=str(path)))]
    assert problems == [f"{path}:4: devices.0.driver: pulse_counter needs the gpio extra: "
                        "pip install 'edge-gateway[gpio]'"]
    # In simulate mode nothing of gpiod is needed.
    sim = parse_config(text.replace("id: g", "id: g, simulate: true"), name=str(path))
    assert checks.run_checks(sim) == []


def test_kernel_entries_sit_with_their_drivers() -> None:
    """One place per device kind (issue 24's rule): the entry after its driver in gateway/drivers/."""
    import inspect

    from gateway.catalog import specs

    kernel = {name: spec for name, spec in specs().items() if spec.kind == "kernel"}
    assert set(kernel) == {"ds18b20", "iio", "hwmon", "pi_health", "gpio_contact", "pulse_counter"}
    for spec in kernel.values():
        module = inspect.getmodule(spec.config)
        assert module is not None and module.__name__.startswith("gateway.drivers.")
        assert getattr(module, "SPEC", None) is spec
        assert (spec.kernel_poll is None) != (spec.driver not in ("gpio_contact", "pulse_counter"))
