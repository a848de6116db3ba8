"""sd_notify through a real unix datagram socket, as systemd's NOTIFY_SOCKET would be.

systemd itself cannot run here (it is not PID 1), so the test plays its part:
it binds the datagram socket, passes its path in NOTIFY_SOCKET with
WATCHDOG_USEC, and reads what the daemon sends.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.config import load_config
from gateway.daemon import Gateway
from gateway.service.notify import Notifier
from gateway.service.watchdog import ServiceGlue
from tests.support import GatewayProcess, Mosquitto, sim_header, write_config


class NotifySocket:
    """The service manager's end: a bound AF_UNIX datagram socket."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.messages: list[dict[str, str]] = []

    def _recv(self, timeout: float) -> dict[str, str] | None:
        self.sock.settimeout(max(0.001, timeout))
        try:
            data = self.sock.recv(4096)
        except TimeoutError:
            return None
        fields = dict(line.split("=", 1) for line in data.decode().splitlines() if line)
        fields["_at"] = repr(time.monotonic())
        self.messages.append(fields)
        return fields

    def wait_for(self, predicate: Callable[[dict[str, str]], bool],
                 timeout: float = 30.0) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            msg = self._recv(remaining)
            if msg is not None and predicate(msg):
                return msg
        raise AssertionError(f"no matching notification; got {self.messages[-10:]}")

    def collect(self, seconds: float) -> list[dict[str, str]]:
        """Everything that arrives within `seconds`."""
        got: list[dict[str, str]] = []
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            msg = self._recv(remaining)
            if msg is not None:
                got.append(msg)
        return got

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def short_dir() -> Iterator[Path]:
    # AF_UNIX paths are limited to 108 bytes; pytest's tmp_path can be longer.
    d = Path(tempfile.mkdtemp(prefix="sdn-"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def config_text(tmp_path: Path, port: int, probe_interval: str = "150ms") -> str:
    return f"""
{sim_header("notify-test", port, tmp_path)}devices:
  - name: air
    driver: bme280
    address: 0x76
    interval: 100ms
  - name: probe
    driver: tmp102
    bus: 3
    address: 0x48
    interval: {probe_interval}
"""


# -- the notifier on its own ---------------------------------------------------------


def test_notifier_is_a_no_op_without_notify_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    n = Notifier.from_environ()
    assert not n.enabled
    assert n.watchdog_period is None
    assert n.ready("x") is False
    assert n.sent == 0 and n.errors == 0


def test_filesystem_and_abstract_sockets(short_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = str(short_dir / "notify")
    fs = NotifySocket(path)
    abstract_name = f"edge-gateway-test-{os.getpid()}-{id(fs)}"
    ab = NotifySocket("\0" + abstract_name)
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        monkeypatch.setenv("WATCHDOG_USEC", "3000000")
        monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
        n = Notifier.from_environ()
        # Hidden from child processes (the inference worker must not notify).
        assert "NOTIFY_SOCKET" not in os.environ and "WATCHDOG_USEC" not in os.environ
        assert n.watchdog_period == 3.0
        assert n.ready("all good\nsecond line")
        msg = fs.wait_for(lambda m: "READY" in m)
        assert msg["READY"] == "1"
        assert msg["STATUS"] == "all good second line"  # one line

        before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        assert n.reloading()
        msg = fs.wait_for(lambda m: "RELOADING" in m)
        after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        assert before <= int(msg["MONOTONIC_USEC"]) <= after

        monkeypatch.setenv("NOTIFY_SOCKET", "@" + abstract_name)
        a = Notifier.from_environ()
        assert a.watchdog_period is None
        assert a.watchdog() and a.stopping()
        assert ab.wait_for(lambda m: "WATCHDOG" in m)["WATCHDOG"] == "1"
        assert ab.wait_for(lambda m: "STOPPING" in m)["STOPPING"] == "1"
    finally:
        fs.close()
        ab.close()


def test_watchdog_meant_for_another_pid_is_ignored(monkeypatch: pytest.MonkeyPatch,
                                                   short_dir: Path) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(short_dir / "x"))
    monkeypatch.setenv("WATCHDOG_USEC", "3000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert Notifier.from_environ().watchdog_period is None


def test_unreachable_socket_is_counted_not_raised(short_dir: Path) -> None:
    n = Notifier(str(short_dir / "nobody-listens"))
    assert n.ready() is False
    assert n.status("x") is False
    assert n.errors == 2


# -- the daemon as systemd runs it ------------------------------------------------------


def test_daemon_notifies_ready_status_watchdog_reload_stopping(
    tmp_path: Path, broker: Mosquitto, short_dir: Path
) -> None:
    ns = NotifySocket(str(short_dir / "notify"))
    cfg = write_config(tmp_path / "gw.yaml", config_text(tmp_path, broker.port))
    gw = GatewayProcess(cfg, tmp_path / "gw.log", env={
        "NOTIFY_SOCKET": str(short_dir / "notify"), "WATCHDOG_USEC": "1000000",
    })
    gw.start()
    try:
        ready = ns.wait_for(lambda m: m.get("READY") == "1")
        assert "STATUS" in ready
        # Pings at half of WATCHDOG_USEC, each with the one-line status.
        pings = [ns.wait_for(lambda m: m.get("WATCHDOG") == "1") for _ in range(4)]
        last = ns.wait_for(
            lambda m: m.get("WATCHDOG") == "1" and "devices 2 ok, 0 failing" in m.get("STATUS", "")
            and " connected" in m.get("STATUS", "")
        )
        assert "spool " in last["STATUS"] and f"127.0.0.1:{broker.port}" in last["STATUS"]
        assert len(pings) == 4

        gw.signal(signal.SIGHUP)
        reloading = ns.wait_for(lambda m: m.get("RELOADING") == "1")
        assert int(reloading["MONOTONIC_USEC"]) > 0
        ns.wait_for(lambda m: m.get("READY") == "1")

        gw.signal(signal.SIGTERM)
        ns.wait_for(lambda m: m.get("STOPPING") == "1")
        assert gw.wait(40) == 0, gw.output()
    finally:
        gw.kill()
        ns.close()
    assert "Traceback" not in gw.output()


def test_wedged_reader_stops_the_watchdog_pings(
    tmp_path: Path, broker: Mosquitto, short_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ns = NotifySocket(str(short_dir / "notify"))
    cfg = load_config(write_config(tmp_path / "gw.yaml", config_text(tmp_path, broker.port)))
    gw = Gateway(cfg)
    glue = ServiceGlue(gw, Notifier(str(short_dir / "notify"), watchdog_usec=1_000_000)).attach()
    assert glue.tick == 0.5

    # Test-only fault: the TMP102 model's next bus read blocks until released,
    # the way a driver call stuck in the kernel would.
    assert gw.sim is not None
    chip = gw.sim.chips["probe"]
    real_read = chip.read
    wedge = threading.Event()
    release = threading.Event()

    def maybe_blocking_read(n: int) -> bytes:
        if wedge.is_set():
            release.wait(120)
        return bytes(real_read(n))

    monkeypatch.setattr(chip, "read", maybe_blocking_read)
    result: list[int] = []
    runner = threading.Thread(target=lambda: result.append(gw.run(glue.tick)),
                              name="gateway-under-test")
    runner.start()
    try:
        ns.wait_for(lambda m: m.get("READY") == "1")
        for _ in range(3):
            ns.wait_for(lambda m: m.get("WATCHDOG") == "1")

        wedge.set()
        stuck = ns.wait_for(lambda m: "NOT ALIVE" in m.get("STATUS", ""), timeout=30)
        assert "reader probe stuck" in stuck["STATUS"]
        assert "WATCHDOG" not in stuck
        # While it is wedged no ping goes out (6 ticks' worth), though the other
        # reader and the publisher are fine.
        during = ns.collect(3.0)
        assert not [m for m in during if "WATCHDOG" in m], during
        assert gw.readers["air"].alive

        release.set()
        wedge.clear()
        ns.wait_for(lambda m: m.get("WATCHDOG") == "1", timeout=30)
    finally:
        release.set()
        gw.request_stop()
        runner.join(60)
    try:
        assert not runner.is_alive()
        assert result == [0]
        ns.wait_for(lambda m: m.get("STOPPING") == "1", timeout=5)
    finally:
        ns.close()


def test_healthy_slow_reader_is_not_flagged(tmp_path: Path, broker: Mosquitto,
                                            short_dir: Path) -> None:
    """A reader polling every 3 s beats only every 3 s: that is not a wedge."""
    ns = NotifySocket(str(short_dir / "notify"))
    cfg = load_config(write_config(tmp_path / "gw.yaml",
                                   config_text(tmp_path, broker.port, probe_interval="3s")))
    gw = Gateway(cfg)
    glue = ServiceGlue(gw, Notifier(str(short_dir / "notify"), watchdog_usec=1_000_000)).attach()
    runner = threading.Thread(target=gw.run, args=(glue.tick,), name="gateway-under-test")
    runner.start()
    try:
        ns.wait_for(lambda m: m.get("READY") == "1")
        got = ns.collect(7.0)  # more than two of the slow reader's intervals
    finally:
        gw.request_stop()
        runner.join(60)
        ns.close()
    assert not runner.is_alive()
    assert not [m for m in got if "NOT ALIVE" in m.get("STATUS", "")], got
    assert len([m for m in got if m.get("WATCHDOG") == "1"]) >= 5


def test_stuck_publisher_stops_the_watchdog_pings(
    tmp_path: Path, broker: Mosquitto, short_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ns = NotifySocket(str(short_dir / "notify"))
    cfg = load_config(write_config(tmp_path / "gw.yaml", config_text(tmp_path, broker.port)))
    gw = Gateway(cfg)
    glue = ServiceGlue(gw, Notifier(str(short_dir / "notify"), watchdog_usec=1_000_000)).attach()
    # Test-only fault: the publisher thread blocks inside the outbox, as it would
    # in a deadlocked MQTT client call.
    real_take = gw.outbox.take
    wedge = threading.Event()
    release = threading.Event()

    def maybe_blocking_take(limit: int) -> list[Any]:
        if wedge.is_set():
            release.wait(120)
        return real_take(limit)

    monkeypatch.setattr(gw.outbox, "take", maybe_blocking_take)
    runner = threading.Thread(target=gw.run, args=(glue.tick,), name="gateway-under-test")
    runner.start()
    try:
        ns.wait_for(lambda m: m.get("READY") == "1")
        ns.wait_for(lambda m: m.get("WATCHDOG") == "1")
        wedge.set()
        stuck = ns.wait_for(lambda m: "NOT ALIVE" in m.get("STATUS", ""), timeout=30)
        assert "publisher stuck" in stuck["STATUS"]
        assert not [m for m in ns.collect(3.0) if "WATCHDOG" in m]
        wedge.clear()
        release.set()
        ns.wait_for(lambda m: m.get("WATCHDOG") == "1", timeout=30)
    finally:
        release.set()
        gw.request_stop()
        runner.join(60)
        ns.close()
    assert not runner.is_alive()
