"""I2C readers on one simulated bus: a faulty device never stops the others and recovers by itself.

Real reader threads, real drivers, the simulated bus; faults injected per chip.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from gateway.catalog import spec_for
from gateway.config.model import I2CDevice
from gateway.health import Health
from gateway.readers.base import Backoff, ReaderContext
from gateway.readers.i2c import I2CBuses, I2CReader
from gateway.reading import Reading
from hardware_sim.world import SimWorld

WAIT = 60.0  # generous: the machine is shared and slow


@dataclass
class Rig:
    world: SimWorld = field(default_factory=SimWorld)
    health: Health = field(default_factory=Health)
    readers: dict[str, I2CReader] = field(default_factory=dict)
    readings: dict[str, list[Reading]] = field(default_factory=dict)
    states: dict[str, list[str]] = field(default_factory=dict)
    #: errors of each device at the moment each reading of another arrived
    errors_seen: list[dict[str, int]] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)

    def __post_init__(self) -> None:
        self.buses = I2CBuses(self.world.open_bus)

    def add(self, name: str, driver: str, address: int, interval: float = 0.02,
            sim: dict[str, Any] | None = None, **options: Any) -> None:
        self.world.add_chip(name, driver, 1, address, sim)
        spec = spec_for(driver)
        cfg = spec.config.model_validate(
            {"name": name, "driver": driver, "address": address, "interval": interval, **options}
        )
        assert isinstance(cfg, I2CDevice)
        health = self.health.device(name, driver)
        self.readings[name] = []
        self.states[name] = [health.state]

        def changed(name: str = name) -> None:
            with self.cond:
                self.states[name].append(self.health.devices[name].state)
                self.cond.notify_all()

        ctx = ReaderContext(put=lambda r: self._put(r), health=health, on_health_change=changed,
                            simulate=True)
        self.readers[name] = I2CReader(cfg, spec, ctx, self.buses)

    def _put(self, reading: Reading) -> bool:
        with self.cond:
            self.readings[reading.device].append(reading)
            self.errors_seen.append({n: h.total_errors for n, h in self.health.devices.items()})
            self.cond.notify_all()
        return True

    def wait(self, predicate: Callable[[], bool], timeout: float = WAIT) -> bool:
        with self.cond:
            return self.cond.wait_for(predicate, timeout)

    def count(self, name: str) -> int:
        return len(self.readings[name])

    def start(self) -> None:
        for r in self.readers.values():
            r.start()

    def stop(self) -> None:
        for r in self.readers.values():
            r.stop()
        for r in self.readers.values():
            assert r.join(30), f"reader {r.name} did not stop"


@pytest.fixture
def rig() -> Iterator[Rig]:
    r = Rig()
    try:
        yield r
    finally:
        r.stop()


def test_nacking_eio_and_absent_devices_never_stop_the_healthy_one(rig: Rig) -> None:
    rig.add("good", "tmp102", 0x48, sim={"values": {"temperature_c": 20.0}})
    rig.add("dead", "sht3x", 0x44, sim={"faults": {"nack": True}})
    rig.add("noisy", "ads1115", 0x49, sim={"faults": {"eio_burst": 1_000_000}})
    rig.add("gone", "bh1750", 0x23, sim={"faults": {"absent_for": "1h"}})
    rig.add("garbled", "sht4x", 0x46, sim={"faults": {"corrupt_crc": True}})
    rig.start()
    faulty = ("dead", "noisy", "gone", "garbled")
    assert rig.wait(lambda: rig.count("good") >= 40
                    and all(rig.health.devices[n].total_errors >= 3 for n in faulty))
    for r in rig.readers.values():
        assert r.alive and r.poller.error is None  # the bus thread never died
    good = rig.health.devices["good"]
    assert good.state == "ok" and good.total_errors == 0
    assert all(r.values == {"temperature_c": 20.0} for r in rig.readings["good"])
    for name in faulty:
        assert rig.health.devices[name].state == "failing"
        assert rig.count(name) == 0
    # Both kept going at the same time: while the good device's readings arrived, the faulty
    # ones kept being retried (their error counts grew between good readings).
    seen = [e for e in rig.errors_seen if "dead" in e]
    assert seen[0]["dead"] < seen[-1]["dead"] and seen[0]["noisy"] < seen[-1]["noisy"]
    assert "EREMOTEIO" in (rig.health.devices["dead"].last_error or "")
    assert "EIO" in (rig.health.devices["noisy"].last_error or "")
    assert "CrcError" in (rig.health.devices["garbled"].last_error or "")


def test_slow_conversion_delays_others_only_by_its_own_transaction(rig: Rig) -> None:
    # The slow device's driver waits for its conversion inside its bus transaction, then
    # gives up (ConversionTimeout); the healthy device's polls still happen in between.
    rig.add("good", "sht3x", 0x44, interval=0.02)
    rig.add("slow", "bme280", 0x76, interval=0.02, sim={"faults": {"slow_conversion": True}})
    rig.start()
    assert rig.wait(lambda: rig.count("good") >= 30 and rig.health.devices["slow"].total_errors >= 5)
    assert rig.health.devices["good"].total_errors == 0
    assert "ConversionTimeout" in (rig.health.devices["slow"].last_error or "")


def test_one_log_line_per_state_change(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="gateway.readers")
    rig.add("flaky", "tmp102", 0x48, interval=0.02, sim={"faults": {"eio_burst": 6}})
    rig.start()
    assert rig.wait(lambda: rig.count("flaky") >= 5)
    h = rig.health.devices["flaky"]
    assert h.total_errors == 6 and h.state == "ok" and h.consecutive_errors == 0
    lines = [r for r in caplog.records if r.name == "gateway.readers" and "flaky" in r.getMessage()]
    assert [r.levelno for r in lines] == [logging.WARNING, logging.INFO], [r.getMessage() for r in lines]
    assert "failing" in lines[0].getMessage() and "EIO" in lines[0].getMessage()
    assert "recovered after 6 errors" in lines[1].getMessage()
    assert not [r for r in caplog.records if r.exc_info]  # device faults are not tracebacks
    assert rig.states["flaky"] == ["starting", "failing", "ok"]


def test_absent_at_start_is_picked_up_when_it_appears(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gateway.readers")
    rig.add("present", "bh1750", 0x23, interval=0.05, sim={"values": {"illuminance_lx": 120.0}})
    rig.add("late", "bme280", 0x77, interval=0.05,
            sim={"faults": {"absent_for": "2s"}, "values": {"temperature_c": 18.25}})
    rig.start()
    assert rig.wait(lambda: rig.count("late") >= 3)
    assert rig.states["late"] == ["starting", "failing", "ok"]
    assert rig.states["present"] == ["starting", "ok"]
    assert rig.readings["late"][0].values["temperature_c"] == pytest.approx(18.25, abs=0.01)
    assert rig.health.devices["late"].total_errors >= 1
    msgs = [r.getMessage() for r in caplog.records if "late" in r.getMessage()]
    assert len(msgs) == 2 and "failing" in msgs[0] and "EREMOTEIO" in msgs[0]
    assert "recovered" in msgs[1]


def test_health_goes_failing_then_ok_for_a_stuck_then_freed_device(rig: Rig) -> None:
    rig.add("probe", "tmp102", 0x48, interval=0.02)
    rig.start()
    assert rig.wait(lambda: rig.count("probe") >= 2)
    chip = rig.world.chips["probe"]
    chip.faults.nack = True  # unplugged while running
    assert rig.wait(lambda: rig.health.devices["probe"].state == "failing")
    n = rig.count("probe")
    chip.faults.nack = False  # plugged back in
    assert rig.wait(lambda: rig.count("probe") >= n + 2)
    assert rig.states["probe"] == ["starting", "ok", "failing", "ok"]
    snap = rig.health.snapshot()["devices"]["probe"]
    assert snap["state"] == "ok" and snap["errors"] >= 1 and snap["consecutive_errors"] == 0
    assert snap["last_error"].startswith("EREMOTEIO")


def test_backoff_is_capped_at_the_interval_by_default(rig: Rig) -> None:
    rig.add("a", "tmp102", 0x48, interval=0.25)
    rig.add("b", "tmp102", 0x49, interval=5.0)
    assert rig.readers["a"].backoff.cap == 0.25
    assert rig.readers["b"].backoff.cap == 5.0
    b = Backoff(base=0.1, cap=5.0)
    assert [b.next_delay() for _ in range(9)] == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0]
    b.reset()
    assert b.next_delay() == 0.1
