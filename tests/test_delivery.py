"""Delivery guarantees with a real broker and real process signals.

Each test runs the gateway CLI as a subprocess with fast simulated sensors and
checks, at a subscriber with a persistent session, that every device's `seq`
arrives without a gap up to the last seq the spool ever gave out.
"""

from __future__ import annotations

import signal
import sqlite3
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.support import GatewayProcess, Mosquitto, Subscriber, wait_until, write_config

PREFIX = "gateway/dg"
DEVICES = ["t0", "t1", "t2", "t3"]


def gw_config(tmp_path: Path, port: int, interval: str = "10ms", stop_timeout: str = "10s",
              write_delay: str = "0") -> Path:
    devices = "\n".join(
        f"""  - name: {name}
    driver: tmp102
    address: {0x48 + i}
    interval: {interval}
    sim: {{values: {{temperature_c: {20 + i}}}}}"""
        for i, name in enumerate(DEVICES)
    )
    return write_config(tmp_path / "gw.yaml", f"""
gateway:
  id: dg
  simulate: true
  stop_timeout: {stop_timeout}
mqtt:
  host: 127.0.0.1
  port: {port}
  reconnect_min: 1
  reconnect_max: 1
buffer:
  path: {tmp_path}/spool.db
  write_delay: {write_delay}
devices:
{devices}
""")


def durable_subscriber(port: int) -> Subscriber:
    sub = Subscriber(port, f"{PREFIX}/+", qos=1, client_id="dg-test-subscriber")
    sub.client.reconnect_delay_set(1, 1)
    return sub.start()


def spool_state(path: Path) -> tuple[dict[str, int], int]:
    db = sqlite3.connect(path)
    try:
        seqs = dict(db.execute("SELECT device, seq FROM seqs").fetchall())
        left = db.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
    finally:
        db.close()
    return seqs, left


def check_complete(sub: Subscriber, last: dict[str, int]) -> Counter[str]:
    """Every device's seqs 1..last arrived (in order after dropping duplicates), each
    seq naming one reading."""
    duplicates: Counter[str] = Counter()
    for dev in DEVICES:
        got = sub.on(f"{PREFIX}/{dev}")
        seqs = [m.json()["seq"] for m in got]
        assert last.get(dev, 0) > 0, f"{dev}: nothing was accepted"
        # A duplicate is the same reading again: a seq never names two readings (a
        # consumer that drops duplicates by seq would drop the second one).
        payloads: dict[int, bytes] = {}
        for m, s in zip(got, seqs, strict=True):
            assert payloads.setdefault(s, m.payload) == m.payload, (
                f"{dev}: seq {s} given to two readings: {payloads[s]!r} and {m.payload!r}")
        assert set(seqs) == set(range(1, last[dev] + 1)), (
            f"{dev}: missing {sorted(set(range(1, last[dev] + 1)) - set(seqs))[:20]}"
        )
        # Order: once duplicates are dropped, seqs only go up.
        seen = 0
        for s in seqs:
            if s > seen:
                assert s == seen + 1, f"{dev}: {s} arrived before {seen + 1}"
                seen = s
        duplicates[dev] = len(seqs) - len(set(seqs))
    return duplicates


def wait_all(sub: Subscriber, last: dict[str, int], timeout: float = 60) -> None:
    sub.wait_for(
        lambda s: all(
            len({m.json()["seq"] for m in s.on(f"{PREFIX}/{d}")}) >= last.get(d, 0) for d in DEVICES
        ),
        timeout=timeout,
    )


def test_broker_restarts_under_load_lose_nothing(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "broker", persistent=True)
    broker.start()
    sub = durable_subscriber(broker.port)
    gw = GatewayProcess(gw_config(tmp_path, broker.port), tmp_path / "gw.log").start()
    try:
        assert sub.wait_for(lambda s: len(s.messages) > 50), gw.output()
        for k in range(1, 4):
            broker.stop()
            time.sleep(1.5)  # readings pile up in the spool meanwhile
            broker.start()
            # The restarted broker replays its own stored backlog to the durable
            # subscriber: new messages there do not mean the gateway is back. Its log does.
            def back(k: int = k) -> bool:
                return gw.output().count("reconnected to") >= k

            assert wait_until(back, 30), gw.output()[-3000:]
            n = len(sub.messages)
            assert sub.wait_for(lambda s, n=n: len(s.messages) > n + 50, timeout=30), gw.output()
        assert gw.stop() == 0, gw.output()
        last, left = spool_state(tmp_path / "spool.db")
        assert left == 0, "a clean stop with the broker up delivers everything\n" + gw.output()[-6000:]
        wait_all(sub, last)
        dups = check_complete(sub, last)
        print("duplicates per device:", dict(dups), "last seqs:", last)
        assert "reconnected" in gw.output()
    finally:
        gw.kill()
        sub.stop()
        broker.stop()


def test_sigkill_under_load_then_restart_loses_nothing(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "broker", persistent=True)
    broker.start()
    sub = durable_subscriber(broker.port)
    cfg = gw_config(tmp_path, broker.port)
    try:
        for _ in range(2):
            gw = GatewayProcess(cfg, tmp_path / "gw.log").start()
            n = len(sub.messages)
            assert sub.wait_for(lambda s, n=n: len(s.messages) > n + 200), gw.output()
            gw.signal(signal.SIGKILL)
            gw.wait(10)
        gw = GatewayProcess(cfg, tmp_path / "gw.log").start()
        n = len(sub.messages)
        assert sub.wait_for(lambda s, n=n: len(s.messages) > n + 100), gw.output()
        assert gw.stop() == 0
        last, left = spool_state(tmp_path / "spool.db")
        assert left == 0
        wait_all(sub, last)
        dups = check_complete(sub, last)
        print("duplicates per device after 2 SIGKILLs:", dict(dups))
        # Re-delivered after a SIGKILL: what was in flight (max_inflight 200, shared by
        # the devices) plus the acks not yet committed (one commit window, at most
        # commit_max_rows 500): per kill, for all devices together.
        assert sum(dups.values()) <= 2 * (200 + 500), dups
    finally:
        sub.stop()
        broker.stop()


@pytest.mark.parametrize("write_delay", ["0", "1s"])
def test_sigterm_with_broker_down_delivers_after_restart(tmp_path: Path, write_delay: str) -> None:
    """With write_delay (the SD-card mode) too: what the broker did not acknowledge
    is spooled once due, and everything is written at the stop."""
    broker = Mosquitto(tmp_path / "broker", persistent=True)
    broker.start()
    sub = durable_subscriber(broker.port)
    cfg = gw_config(tmp_path, broker.port, interval="20ms", stop_timeout="2s",
                    write_delay=write_delay)
    gw = GatewayProcess(cfg, tmp_path / "gw.log").start()
    try:
        assert sub.wait_for(lambda s: len(s.messages) > 20), gw.output()
        broker.stop()
        time.sleep(2.0)
        started = time.monotonic()
        assert gw.stop() == 0, gw.output()
        print(f"stop with the broker down took {time.monotonic() - started:.1f} s")
        last, left = spool_state(tmp_path / "spool.db")
        assert left > 50, "readings taken while the broker was down wait in the spool"
        broker.start()
        gw = GatewayProcess(cfg, tmp_path / "gw.log").start()
        wait_all(sub, last)
        assert gw.stop() == 0
        last, left = spool_state(tmp_path / "spool.db")
        assert left == 0
        wait_all(sub, last)
        check_complete(sub, last)
    finally:
        gw.kill()
        sub.stop()
        broker.stop()


def test_write_delay_sigkill_loses_no_acknowledged_reading_and_never_repeats_a_seq(
        tmp_path: Path) -> None:
    """The SD-card mode's price, exactly: a SIGKILL may lose readings the broker had
    not acknowledged, but what arrived before is complete, and seq goes on above it."""
    broker = Mosquitto(tmp_path / "broker", persistent=True)
    broker.start()
    sub = durable_subscriber(broker.port)
    cfg = gw_config(tmp_path, broker.port, write_delay="2s")
    gw = GatewayProcess(cfg, tmp_path / "gw.log").start()
    try:
        assert sub.wait_for(lambda s: len(s.messages) > 200), gw.output()
        gw.signal(signal.SIGKILL)
        gw.wait(10)
        settled = -1
        while settled != len(sub.messages):  # what was on its way has arrived
            settled = len(sub.messages)
            time.sleep(0.5)
        before = {d: {m.json()["seq"]: m.payload for m in sub.on(f"{PREFIX}/{d}")}
                  for d in DEVICES}
        count = {d: len(sub.on(f"{PREFIX}/{d}")) for d in DEVICES}
        gw = GatewayProcess(cfg, tmp_path / "gw.log").start()
        assert sub.wait_for(lambda s: len(s.messages) > settled + 100), gw.output()
        assert gw.stop() == 0
        assert "did not stop cleanly" in gw.output()
        for d in DEVICES:
            first = before[d]
            assert set(first) == set(range(1, max(first) + 1)), f"{d}: a gap before the kill"
            later = sub.on(f"{PREFIX}/{d}")[count[d]:]
            for m in later:
                seq = m.json()["seq"]
                # At or below the last seq seen: only a resend of that very reading.
                assert seq > max(first) or first.get(seq) == m.payload, \
                    f"{d}: seq {seq} given twice: {first.get(seq)!r} and {m.payload!r}"
            assert any(m.json()["seq"] > max(first) for m in later)
    finally:
        gw.kill()
        sub.stop()
        broker.stop()


def test_memory_durability_writes_no_file(tmp_path: Path, broker: Mosquitto) -> None:
    cfg = gw_config(tmp_path, broker.port, interval="50ms")
    cfg.write_text(cfg.read_text().replace("buffer:\n", "buffer:\n  durability: memory\n"))
    sub = Subscriber(broker.port, f"{PREFIX}/+").start()
    gw = GatewayProcess(cfg, tmp_path / "gw.log").start()
    try:
        assert sub.wait_for(lambda s: len(s.messages) > 20), gw.output()
        assert gw.stop() == 0
        assert not (tmp_path / "spool.db").exists()
    finally:
        gw.kill()
        sub.stop()




def test_qos0_is_deleted_once_sent(tmp_path: Path, broker: Mosquitto) -> None:
    """QoS 0 has no PUBACK: a reading leaves the spool once the client has sent it."""
    cfg = gw_config(tmp_path, broker.port, interval="20ms")
    cfg.write_text(cfg.read_text().replace("mqtt:\n", "mqtt:\n  qos: 0\n"))
    sub = Subscriber(broker.port, f"{PREFIX}/+", qos=0).start()
    gw = GatewayProcess(cfg, tmp_path / "gw.log").start()
    try:
        assert sub.wait_for(lambda s: len(s.messages) > 400), gw.output()
        assert gw.stop() == 0
        last, left = spool_state(tmp_path / "spool.db")
        assert left == 0, "sent QoS 0 readings must not pile up in the spool"
        for dev in DEVICES:
            seqs = [m.json()["seq"] for m in sub.on(f"{PREFIX}/{dev}")]
            assert seqs == list(range(1, last[dev] + 1))  # loopback: nothing lost
    finally:
        gw.kill()
        sub.stop()


def test_unusable_spool_path_is_a_clear_error(tmp_path: Path, broker: Mosquitto) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the spool's directory should be")
    cfg = gw_config(tmp_path, broker.port)
    cfg.write_text(cfg.read_text().replace(f"path: {tmp_path}/spool.db",
                                           f"path: {blocker}/spool.db"))
    gw = GatewayProcess(cfg, tmp_path / "gw.log").start()
    code = gw.wait(30)
    out = gw.output()
    assert code == 2, out
    assert "buffer.path" in out and "Traceback" not in out
