"""The places the publisher reaches into paho (gateway/mqtt/paho_compat.py), against a real Mosquitto.

- `_handle_pubackcomp`: a plain two-byte PUBACK (MQTT 5 Success without properties,
  §3.4.2.1) skips paho's decoding; anything else, such as a refusal with reason code
  0x87 Not authorized, takes paho's own path and must still reach the publisher as a
  failure.
- `on_socket_register_write`: publish() only queues; the publisher's loop writes. A
  QoS 0 packet still queued when the connection drops is lost inside paho without an
  on_publish, so the publisher must forget it and take the reading again.

The broker's ACL lets this gateway write every topic but one device's, so one run
shows both PUBACK forms side by side. Mosquitto 2.0 answers a denied QoS 1 PUBLISH
from an MQTT 5 client with PUBACK 0x87 (and drops the message).
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from pytest_mock import MockerFixture

from gateway.config import load_config
from gateway.mqtt import paho_compat
from gateway.mqtt.buffered_socket import BufferedSocket
from gateway.mqtt.paho_compat import FastClient, seams_usable
from tests.support import Mosquitto, Subscriber, running_gateway, sim_header, tmp102_devices, wait_until

GW_ID = "acl"
PREFIX = f"gateway/{GW_ID}"


def acl_broker(workdir: Path) -> Mosquitto:
    acl = workdir / "acl"
    workdir.mkdir(parents=True, exist_ok=True)
    # Anonymous clients (this gateway and the test's subscriber): read everything,
    # write everything of this gateway except the device "denied".
    acl.write_text(
        "topic read #\n"
        f"topic write {PREFIX}/status\n"
        f"topic write {PREFIX}/health\n"
        f"topic write {PREFIX}/allowed\n"
        "topic write homeassistant/#\n"
    )
    acl.chmod(0o644)
    return Mosquitto(workdir, extra_conf=f"acl_file {acl}\n")


def write_config(tmp_path: Path, port: int) -> Path:
    """Two simulated TMP102s, "allowed" and "denied"; the spool is tmp_path/spool.db."""
    path = tmp_path / "gw.yaml"
    path.write_text(sim_header(GW_ID, port, tmp_path, "  health_interval: 1h")
                    + tmp102_devices(["allowed", "denied"], "50ms"))
    return path


def spooled(spool: Path, device: str) -> list[int]:
    db = sqlite3.connect(spool)
    try:
        return [int(r[0]) for r in db.execute(
            "SELECT seq FROM messages WHERE device = ? ORDER BY id", (device,))]
    finally:
        db.close()


def test_success_fast_path_and_refusal_slow_path(tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    broker = acl_broker(tmp_path / "broker")
    broker.start()
    spool = tmp_path / "spool.db"
    cfg = load_config(write_config(tmp_path, broker.port))
    sub = Subscriber(broker.port, f"{PREFIX}/#").start()
    try:
        with caplog.at_level(logging.WARNING, logger="gateway.mqtt"), running_gateway(cfg) as gw:
            pub = gw.publisher
            assert wait_until(lambda: pub.connected), gw.health.broker_error
            assert sub.wait_for(lambda s: s.count(f"{PREFIX}/allowed") >= 30)
            assert wait_until(lambda: pub.failed_acks >= 10)
            client = pub.client
            # Accepted readings came back as two-byte PUBACKs and took the fast path.
            assert isinstance(client, FastClient) and client.fast_pubacks >= 30
            assert pub.connected and gw.health.reconnects == 0
        refused = pub.failed_acks
    finally:
        sub.stop()
        broker.stop()
    allowed = [int(m.json()["seq"]) for m in sub.on(f"{PREFIX}/allowed")]
    assert allowed == list(range(1, len(allowed) + 1))  # in order, no gaps
    assert sub.on(f"{PREFIX}/denied") == []
    # Every refusal reached the publisher as a failure (paho's decoding of 0x87), and
    # none of those readings was acknowledged away: they wait in the spool.
    kept = spooled(spool, "denied")
    assert len(kept) >= refused >= 10
    assert kept == list(range(1, len(kept) + 1))
    assert spooled(spool, "allowed") == []  # all acknowledged and deleted
    # Said once per topic, with the topic and the broker's reason; not once per reading.
    lines = [r.getMessage() for r in caplog.records if "refused a reading" in r.getMessage()]
    assert len(lines) == 1, lines
    assert f"{PREFIX}/denied" in lines[0] and "Not authorized" in lines[0]


def test_qos0_readings_queued_when_the_connection_drops_are_taken_again(
        tmp_path: Path, broker: Mosquitto) -> None:
    # publish() only queues (the external-loop hook); a QoS 0 packet still queued when the
    # connection drops is discarded by paho without an on_publish. The publisher must not
    # keep counting it in flight (the window would shrink for good) and must send it again.
    from gateway.health import Health
    from gateway.mqtt.publisher import Publisher
    from gateway.outbox import Outbox
    from gateway.outbox.spool import SqliteSpool
    from gateway.reading import Reading

    path = write_config(tmp_path, broker.port)
    path.write_text(path.read_text().replace("mqtt:\n", "mqtt:\n  qos: 0\n"))
    cfg = load_config(path)
    box = Outbox(SqliteSpool(cfg.buffer.path), cfg.topic_prefix, commit_interval=0.001)
    box.start()
    pub = Publisher(cfg, box, Health())  # its thread is not started: this test drives it
    try:
        for i in range(5):
            assert box.put(Reading("allowed", {"v": i}, 1_700_000_000.0 + i))
        assert box.flush(10)
        pub.client.connect("127.0.0.1", broker.port)  # a socket, so publish() queues
        sent = box.take(10)
        assert len(sent) == 5
        for m in sent:
            pub._send(m.id, m.topic, m.payload)
        assert len(pub._inflight) == 5 and pub.client.want_write()  # queued, not written
        pub._on_disconnect(pub.client, None, None, "connection lost", None)
        pub._handle_facts()
        assert pub._inflight == {}
        assert pub._room() == pub.window
        assert [m.id for m in box.take(10)] == [m.id for m in sent]  # taken again
    finally:
        pub.client.disconnect()
        box.stop()


def test_seams_are_used_only_with_a_tested_paho() -> None:
    assert seams_usable("2.2.0") is None and seams_usable("2.1.0") is None
    assert "not a tested release" in str(seams_usable("2.3.0"))
    assert "not a tested release" in str(seams_usable("3.0"))
    assert "not a tested release" in str(seams_usable("garbage"))

    class Moved:  # a paho whose internals were renamed
        def _create_socket(self) -> None: ...

    why = seams_usable("2.2.0", Moved)
    assert why is not None and "_handle_pubackcomp" in why and "_do_on_publish" in why


def test_untested_paho_falls_back_to_the_public_api(tmp_path: Path, mocker: MockerFixture,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    """A paho outside the tested range: a plain client, one log line, every reading delivered."""
    mocker.patch.object(paho_compat, "FALLBACK_REASON", "paho-mqtt 9.9.9 is not a tested release")
    mocker.patch.object(paho_compat, "_fallback_logged", False)
    broker = Mosquitto(tmp_path / "broker")
    broker.start()
    path = tmp_path / "gw.yaml"
    path.write_text(sim_header("plain", broker.port, tmp_path) + tmp102_devices(["probe"], "20ms"))
    sub = Subscriber(broker.port, "gateway/plain/#").start()
    try:
        with caplog.at_level(logging.WARNING, logger="gateway.mqtt"), \
                running_gateway(load_config(path)) as gw:
            client = gw.publisher.client
            assert type(client) is mqtt.Client
            assert wait_until(lambda: gw.publisher.connected), gw.health.broker_error
            assert not isinstance(client.socket(), BufferedSocket)
            assert sub.wait_for(lambda s: s.count("gateway/plain/probe") >= 50)
    finally:
        sub.stop()
        broker.stop()
    seqs = [int(m.json()["seq"]) for m in sub.on("gateway/plain/probe")]
    assert seqs == list(range(1, len(seqs) + 1))
    fallback = [r for r in caplog.records if "public API only" in r.getMessage()]
    assert len(fallback) == 1 and "9.9.9" in fallback[0].getMessage()
