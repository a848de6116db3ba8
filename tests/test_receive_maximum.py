"""The publisher honours the broker's MQTT 5 Receive Maximum, on a BufferedSocket.

An in-process Gateway (simulated TMP102s) against a real Mosquitto: with
`max_inflight_messages 5` Mosquitto's CONNACK carries Receive Maximum 5. Mosquitto
2.0 does not throw out a client that exceeds it, so the test watches the
publisher's own in-flight count while a spooled backlog drains.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gateway.config import load_config
from gateway.config.model import Config, MqttSection
from gateway.daemon import Gateway
from gateway.mqtt.buffered_socket import BufferedSocket
from gateway.outbox import Outbox
from gateway.outbox.spool import SqliteSpool
from gateway.reading import Reading
from tests.support import Mosquitto, Subscriber, running_gateway, sim_header, tmp102_devices, wait_until

GW_ID = "rxmax"
PREFIX = f"gateway/{GW_ID}"
DEVICES = ["t0", "t1", "t2"]
BACKLOG = 200  # readings spooled before the gateway starts: a burst far above the window
LIVE = 5  # readings per simulated device to wait for


def write_config(tmp_path: Path, port: int) -> Path:
    """Three simulated TMP102s; the spool is tmp_path/spool.db."""
    path = tmp_path / "gw.yaml"
    path.write_text(sim_header(GW_ID, port, tmp_path, "  health_interval: 1h")
                    + tmp102_devices(DEVICES, "200ms"))
    return path


def spool_backlog(cfg: Config) -> None:
    """Readings of a device "backlog" already in the spool, as after an outage."""
    box = Outbox(SqliteSpool(cfg.buffer.path), cfg.topic_prefix, commit_interval=0.001)
    box.start()
    try:
        for i in range(BACKLOG):
            assert box.put(Reading("backlog", {"v": i}, 1_700_000_000.0 + i))
        assert box.flush(10)
        assert box.stats.accepted == BACKLOG
    finally:
        box.stop()


@contextmanager
def busiest(gw: Gateway) -> Iterator[list[int]]:
    """Samples the publisher's QoS 1 messages in flight; yields [the most seen]."""
    pub = gw.publisher
    most = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            most[0] = max(most[0], len(pub._inflight) + len(pub._control_inflight))
            time.sleep(0.0002)

    sampler = threading.Thread(target=sample, name="test-inflight-sampler", daemon=True)
    sampler.start()
    try:
        yield most
    finally:
        done.set()
        sampler.join(5)


def seqs(sub: Subscriber, topic: str) -> list[int]:
    return [int(m.json()["seq"]) for m in sub.on(topic)]


def check_delivery(tmp_path: Path, broker: Mosquitto, expected_window: int) -> None:
    cfg = load_config(write_config(tmp_path, broker.port))
    spool_backlog(cfg)
    sub = Subscriber(broker.port, f"{PREFIX}/#").start()
    try:
        with running_gateway(cfg) as gw:
            pub = gw.publisher
            assert wait_until(lambda: pub.connected), f"no connection: {gw.health.broker_error}"
            assert pub.window == expected_window
            # paho's socket is ours: if a paho upgrade moved the `_create_socket` seam,
            # this is a plain socket and the publisher is back to a syscall per packet.
            assert isinstance(pub.client.socket(), BufferedSocket)
            with busiest(gw) as most:
                assert sub.wait_for(
                    lambda s: s.count(f"{PREFIX}/backlog") >= BACKLOG
                    and all(s.count(f"{PREFIX}/{d}") >= LIVE for d in DEVICES),
                ), {t: sub.count(t) for t in [f"{PREFIX}/backlog", *(f"{PREFIX}/{d}" for d in DEVICES)]}
            assert 0 < most[0] <= expected_window  # never more in flight than the window
            assert pub.window == expected_window
            assert gw.health.reconnects == 0  # the broker never threw us out
            assert pub.connected
            assert pub.failed_acks == 0
        assert gw.outbox.stats.delivered >= BACKLOG + LIVE * len(DEVICES)
    finally:
        sub.stop()
    backlog = sub.on(f"{PREFIX}/backlog")
    assert [int(m.json()["seq"]) for m in backlog] == list(range(1, BACKLOG + 1))
    assert [int(m.json()["v"]) for m in backlog] == list(range(BACKLOG))
    for d in DEVICES:
        got = seqs(sub, f"{PREFIX}/{d}")
        assert got == list(range(1, len(got) + 1)), d
        assert set(json.loads(sub.on(f"{PREFIX}/{d}")[0].payload)) == {"seq", "ts", "temperature_c"}


def test_window_follows_the_brokers_receive_maximum(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path / "broker", extra_conf="max_inflight_messages 5\n")
    broker.start()
    try:
        check_delivery(tmp_path, broker, expected_window=5)
    finally:
        broker.stop()


def test_window_is_max_inflight_without_a_receive_maximum(tmp_path: Path) -> None:
    default = MqttSection.model_fields["max_inflight"].default
    assert isinstance(default, int) and default > 5
    broker = Mosquitto(tmp_path / "broker")  # max_inflight_messages 0: no Receive Maximum
    broker.start()
    try:
        check_delivery(tmp_path, broker, expected_window=default)
    finally:
        broker.stop()
