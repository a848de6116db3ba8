"""The Prometheus endpoint, scraped over HTTP on loopback and parsed with the Prometheus parser."""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from gateway.metrics import Histogram, reading_age
from gateway.reading import encode_payload
from tests.support import GatewayProcess, Mosquitto, free_port, wait_port, write_config


def scrape(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        assert resp.status == 200
        text = resp.read().decode()
    samples: dict[str, Any] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            key = s.name + ("{" + ",".join(f"{k}={v}" for k, v in sorted(s.labels.items())) + "}"
                            if s.labels else "")
            samples[key] = s.value
    return samples


def test_histogram_is_cumulative_with_inf_bucket() -> None:
    h = Histogram((0.1, 1.0))
    for v in (0.05, 0.1, 0.5, 2.0, 3.0):
        h.observe(v)
    buckets, total = h.snapshot()
    # le is inclusive: 0.1 falls in the 0.1 bucket.
    assert buckets == [("0.1", 2), ("1.0", 3), ("+Inf", 5)]
    assert total == 5.65


def test_reading_age_from_the_payload_timestamp() -> None:
    payload = encode_payload(7, 1_800_000_000.25, {"temperature_c": 20.0})
    age = reading_age(payload, now=1_800_000_001.0)
    assert age is not None and abs(age - 0.75) < 1e-6
    assert reading_age(b'{"seq":1}') is None


def test_metrics_endpoint_reports_pipeline_state(tmp_path: Path, broker: Mosquitto) -> None:
    port = free_port()
    cfg = write_config(tmp_path / "gw.yaml", f"""
gateway: {{id: metrics-test, simulate: true}}
mqtt: {{host: 127.0.0.1, port: {broker.port}}}
buffer: {{path: {tmp_path}/spool.db}}
metrics: {{listen: "127.0.0.1:{port}"}}
devices:
  - {{name: air, driver: bme280, address: 0x76, interval: 100ms}}
  - {{name: dead, driver: tmp102, address: 0x48, interval: 100ms, sim: {{faults: {{nack: true}}}}}}
""")
    gw = GatewayProcess(cfg, tmp_path / "gw.log").start()
    try:
        wait_port(port, timeout=60)
        deadline = time.monotonic() + 60
        m = scrape(port)
        while time.monotonic() < deadline and not (
            m.get("edge_gateway_spool_delivered_total", 0) >= 5
            and m.get("edge_gateway_errors_total{device=dead,driver=tmp102}", 0) >= 2
            and m.get("edge_gateway_publish_latency_seconds_count", 0) >= 5
        ):
            time.sleep(0.5)
            m = scrape(port)
    finally:
        code = gw.stop()
    assert code == 0, gw.output()
    assert m["edge_gateway_readings_total{device=air,driver=bme280}"] >= 5
    assert m["edge_gateway_errors_total{device=air,driver=bme280}"] == 0
    assert m["edge_gateway_errors_total{device=dead,driver=tmp102}"] >= 2
    assert m["edge_gateway_device_up{device=air}"] == 1
    assert m["edge_gateway_device_up{device=dead}"] == 0
    assert m["edge_gateway_broker_connected"] == 1
    assert m["edge_gateway_broker_reconnects_total"] == 0
    assert m["edge_gateway_spool_depth"] >= 0
    assert m["edge_gateway_spool_dropped_total"] == 0
    assert m["edge_gateway_spool_delivered_total"] >= 5
    # Every delivered reading's latency was observed (reading ts -> PUBACK).
    count = m["edge_gateway_publish_latency_seconds_count"]
    assert count >= 5
    assert m["edge_gateway_publish_latency_seconds_bucket{le=+Inf}"] == count
    assert m["edge_gateway_publish_latency_seconds_sum"] > 0
    assert "edge_gateway_inference_latency_seconds_count" in m
    # The endpoint is gone with the gateway (its thread and socket stopped).
    wait_port(port, timeout=30, up=False)


def test_no_endpoint_unless_configured(tmp_path: Path, broker: Mosquitto) -> None:
    from gateway.config import parse_config
    from gateway.daemon import Gateway
    from gateway.metrics import MetricsServer

    cfg = parse_config(f"gateway: {{id: g}}\nmqtt: {{port: {broker.port}}}\n"
                       f"buffer: {{path: {tmp_path}/s.db}}\n")
    gw = Gateway(cfg)
    try:
        assert not any(isinstance(c, MetricsServer) for c in gw.components)
        assert gw.publisher.on_acked is None  # no per-ack work when metrics are off
    finally:
        gw.outbox.spool.close()
