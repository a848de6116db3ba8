"""Losing the broker: logged once as such, with the reason; publishing again within
seconds of its return (immediate first retry, jittered backoff, default cap); and the
duplicates a broker restart costs, bounded by the in-flight window. Real Mosquitto,
stopped and started again on the same port."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from gateway.config import parse_config
from gateway.config.model import MqttSection
from tests.support import Mosquitto, Subscriber, running_gateway, tmp102_devices, wait_until

INFLIGHT = 20


def test_default_reconnect_cap_is_at_most_15_s() -> None:
    assert MqttSection().reconnect_max <= 15.0
    assert MqttSection().reconnect_min <= 1.0


def test_broker_outage_logged_once_recovers_within_seconds_few_duplicates(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    broker = Mosquitto(tmp_path / "broker", persistent=True)
    broker.start()
    # QoS 0 to the subscriber: the broker never sends it anything twice, so every
    # duplicate it sees is one the gateway published twice (resent after a reconnect).
    sub = Subscriber(broker.port, "gateway/br/+", qos=0)
    sub.client.reconnect_delay_set(1, 1)
    sub.start()
    # Default reconnect settings: what a user gets.
    cfg = parse_config(
        f"gateway: {{id: br, simulate: true}}\n"
        f"mqtt: {{host: 127.0.0.1, port: {broker.port}, max_inflight: {INFLIGHT}}}\n"
        f"buffer: {{path: {tmp_path}/spool.db}}\n"
        + tmp102_devices(["t0", "t1"], "10ms"), "gw.yaml")
    recoveries: list[float] = []
    try:
        with caplog.at_level(logging.INFO, logger="gateway"), running_gateway(cfg) as gw:
            assert wait_until(lambda: gw.outbox.stats.delivered > 100, 30)
            for outage in (1.0, 12.0):
                broker.stop()
                time.sleep(outage)  # readings pile up in the spool; the backoff grows
                broker.start()  # same port
                up = time.monotonic()
                before = gw.publisher.health.reconnects
                # Connected again (publishing starts in the same round).
                assert wait_until(lambda: gw.publisher.health.reconnects > before, 60)  # noqa: B023
                recoveries.append(time.monotonic() - up)
                n = gw.outbox.stats.delivered
                assert wait_until(lambda: gw.outbox.stats.delivered > n + 100, 30)  # noqa: B023
            assert wait_until(lambda: gw.outbox.spool.count() < 50, 60)
        last = dict(gw.outbox._seqs)
    finally:
        broker.stop()
        sub.stop()
    print(f"recovery after the broker's return: {[f'{r:.2f} s' for r in recoveries]} "
          f"(outages of 1 s and 12 s, reconnect_max {cfg.mqtt.reconnect_max:g} s)")
    text = caplog.text
    assert text.count("lost the broker") == 2, text  # once per outage
    lost = [r for r in caplog.records if "lost the broker" in r.getMessage()]
    assert all(r.levelno == logging.WARNING for r in lost)
    assert all("(" in r.getMessage() for r in lost)  # with its reason
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], text
    # The retries that fail after a loss are not new warnings.
    assert not [r for r in caplog.records if "cannot connect" in r.getMessage()
                and r.levelno >= logging.WARNING]
    # Back within the cap of the backoff (plus connecting), not minutes.
    assert all(r < cfg.mqtt.reconnect_max + 5 for r in recoveries), recoveries
    # Duplicates after the broker restarts: at most the in-flight window each time.
    for dev in last:
        seqs = [m.json()["seq"] for m in sub.on(f"gateway/br/{dev}")]
        dups = len(seqs) - len(set(seqs))
        print(f"{dev}: {len(seqs)} received, {dups} duplicates over 2 broker restarts")
        assert dups <= 2 * INFLIGHT
