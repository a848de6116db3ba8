"""The health document (`{prefix}/health`): built by gateway.health from the outbox's figures."""

from __future__ import annotations

import json

from gateway.health import Health
from gateway.outbox import Outbox, open_spool
from gateway.reading import Reading


def test_health_document_carries_the_spool_figures() -> None:
    outbox = Outbox(open_spool("memory", "", max_messages=100, max_bytes=1 << 20,
                               when_full="drop_oldest"), "gateway/t")
    outbox.start()
    try:
        for i in range(3):
            assert outbox.put(Reading("air", {"temperature_c": 20.0 + i}, 1_700_000_000.0 + i))
        assert outbox.flush()
        outbox.ack([m.id for m in outbox.take(1)])
        assert outbox.flush()
        health = Health()
        health.device("air", "bme280")
        doc = json.loads(health.payload(outbox.figures(), refused_by_broker=4))
    finally:
        outbox.stop()
    assert list(doc["spool"]) == ["depth", "bytes", "dropped", "rejected", "accepted",
                                  "delivered", "commits", "state", "error", "since",
                                  "file_bytes", "waiting", "refused", "unencodable", "errors",
                                  "recreated", "refused_by_broker"]
    assert (doc["spool"]["state"], doc["spool"]["error"], doc["spool"]["waiting"]) == ("ok", None, 0)
    spool = doc["spool"]
    assert (spool["depth"], spool["accepted"], spool["delivered"], spool["refused_by_broker"]) == (
        2, 3, 1, 4)
    assert spool["bytes"] > 0 and spool["commits"] >= 1
    assert doc["devices"]["air"]["driver"] == "bme280" and "broker" in doc
