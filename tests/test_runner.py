"""`DeviceRunner`: the one interface the daemon and the watchdog use for every kind of device.

An I2C chip is a polled device scheduled on its bus's thread, not a thread of its
own; a serial reader is a thread. Both start, stop, join, beat and say how long
they may go without a beat (`stall_allowance`); the watchdog reads nothing else.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from gateway.catalog import spec_for
from gateway.config import load_config
from gateway.config.model import I2CDevice
from gateway.daemon import Gateway
from gateway.health import Health
from gateway.readers.base import PolledDevice, Reader, ReaderContext
from gateway.readers.factory import make_reader
from gateway.readers.i2c import I2CBuses, I2CReader
from gateway.reading import Reading
from hardware_sim.world import SimWorld
from tests.support import sim_header, wait_until


def test_an_i2c_chip_is_a_polled_device_on_its_bus_thread_not_a_thread() -> None:
    world = SimWorld()
    world.add_chip("probe", "tmp102", 1, 0x48, None)
    buses = I2CBuses(world.open_bus)
    health = Health()
    readings: list[Reading] = []
    cfg = spec_for("tmp102").config.model_validate(
        {"name": "probe", "driver": "tmp102", "address": 0x48, "interval": "50ms"})
    assert isinstance(cfg, I2CDevice)

    def put(r: Reading) -> bool:
        readings.append(r)
        return True

    reader = make_reader(cfg, ReaderContext(put=put, health=health.device("probe", "tmp102")),
                         buses)
    assert isinstance(reader, I2CReader) and isinstance(reader, PolledDevice)
    assert not isinstance(reader, Reader)  # no thread of its own to override
    assert reader.stall_allowance == max(0.05, reader.backoff.cap)
    reader.start()
    try:
        assert wait_until(lambda: len(readings) >= 2)
        assert reader.alive and reader.poller.alive
    finally:
        reader.stop()
        assert reader.join(10)
        buses.close()
    assert not reader.alive and health.devices["probe"].state == "stopped"


@dataclass
class SlowDevice:
    """A DeviceRunner that beat 10 s ago and may rightly go `stall_allowance` s without one."""

    name: str
    stall_allowance: float
    alive: bool = True

    def __post_init__(self) -> None:
        self.heartbeat = time.monotonic() - 10.0

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def join(self, timeout: float | None = None) -> bool:
        return True


def test_the_watchdog_allows_each_device_its_own_stall(tmp_path: Path) -> None:
    path = tmp_path / "gw.yaml"
    path.write_text(sim_header("wd", 1, tmp_path) + "devices: []\n")
    gw = Gateway(load_config(path))
    try:
        gw.readers["patient"] = SlowDevice("patient", stall_allowance=8.0)  # 1 + 2*8 > 10
        gw.readers["stuck"] = SlowDevice("stuck", stall_allowance=2.0)  # 1 + 2*2 < 10
        gw.readers["dead"] = SlowDevice("dead", stall_allowance=60.0, alive=False)
        problems = [p for p in gw.alive_problems(max_age=1.0) if p.startswith("reader")]
    finally:
        gw.outbox.spool.close()
        gw.buses.close()
        if gw.sim is not None:
            gw.sim.close()
    assert problems == ["reader stuck stuck for 10 s", "reader dead is not running"]
