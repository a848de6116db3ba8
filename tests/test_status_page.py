"""The status page (`http.listen`): its data, its listener's limits, and the page in a real browser."""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import urllib.error
import urllib.request
from array import array
from pathlib import Path
from typing import Any

import pytest

from gateway.config import parse_config
from gateway.config.types import parse_listen
from gateway.health import Health
from gateway.reading import Reading
from gateway.web.recorder import Series, StatusRecorder
from gateway.web.server import HttpListener, json_response
from tests.browser_support import Browser
from tests.support import (
    GatewayProcess,
    Mosquitto,
    Subscriber,
    free_port,
    running_gateway,
    wait_port,
    wait_until,
    write_config,
)


def get(url: str, timeout: float = 10.0, auth: str | None = None) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, headers={"Authorization": auth} if auth else {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


# -- the sparkline history -------------------------------------------------------------
def test_series_averages_per_bucket_and_keeps_min_max() -> None:
    s = Series(points=4, step=10.0)
    for t, v in ((100.0, 1.0), (101.0, 3.0), (109.9, 2.0), (110.0, 10.0)):
        s.add(t, v)
    snap = s.snapshot()
    assert snap["t"] == [100.0, 110.0]
    assert snap["avg"] == [2.0, 10.0]
    assert snap["min"] == [1.0, 10.0] and snap["max"] == [3.0, 10.0]


def test_series_is_a_bounded_ring_with_gaps_for_silent_buckets() -> None:
    s = Series(points=3, step=1.0)
    s.add(0.0, 1.0)
    s.add(2.0, 3.0)  # bucket 1 had no reading: it is left out, not drawn as a value
    assert s.snapshot()["t"] == [0.0, 2.0]
    for t in range(3, 50):
        s.add(float(t), float(t))
    snap = s.snapshot()
    assert snap["t"] == [47.0, 48.0, 49.0]  # only the last `points` buckets
    s.add(10.0, 99.0)  # late reading for a closed bucket: ignored
    assert s.snapshot() == snap
    s.add(10_000.0, 5.0)  # a long silence clears the whole ring
    assert s.snapshot()["t"] == [10_000.0]


def test_series_memory_is_fixed_per_quantity() -> None:
    s = Series(points=360, step=60.0)
    for t in range(100_000):
        s.add(float(t), 1.0)
    # Three float arrays of `points` entries, whatever the number of readings (documented).
    arrays = [getattr(s, name) for name in ("_avg", "_min", "_max")]
    assert all(isinstance(a, array) and len(a) == 360 and a.itemsize == 8 for a in arrays)


def test_recorder_records_only_what_the_outbox_accepted_and_logs_state_changes() -> None:
    health = Health()
    rec = StatusRecorder(health, window=60.0, points=60, clock=lambda: 1000.0)
    accepted: list[Reading] = []

    def put(r: Reading) -> bool:
        if r.values.get("temperature_c") == -1:
            return False
        accepted.append(r)
        return True

    tapped = rec.tap(put)
    assert tapped(Reading("air", {"temperature_c": 20.5, "label": "x"}, 10.0))
    assert not tapped(Reading("air", {"temperature_c": -1}, 11.0))
    last = rec.last("air")
    assert last is not None and last.values["temperature_c"] == 20.5 and last.ts == 10.0
    assert set(rec.series()["air"]) == {"temperature_c"}  # text has no sparkline

    dev = health.device("air", "bme280")
    dev.state, dev.last_error = "failing", "EREMOTEIO: no ACK"
    health.changed()
    dev.state = "ok"
    health.changed()
    health.changed()  # no change, no event
    whats = [(e["device"], e["what"], e["level"]) for e in rec.events()]
    assert whats == [("air", "failing: EREMOTEIO: no ACK", "error"), ("air", "recovered", "info")]


# -- the listener ------------------------------------------------------------------------
def _listener(**kw: Any) -> HttpListener:
    routes = {"/metrics": lambda: (200, "text/plain", b"up 1\n"),
              "/api/status": lambda: json_response({"ok": True})}
    lst = HttpListener("127.0.0.1", 0, routes, **kw)
    lst.start()
    return lst


def test_fifty_idle_connections_do_not_block_a_scrape() -> None:
    lst = _listener(max_connections=64, timeout=30.0)
    idle: list[socket.socket] = []
    try:
        for _ in range(50):
            idle.append(socket.create_connection(("127.0.0.1", lst.port)))
        # Half of them sent half a request and stalled (a slow client).
        for s in idle[:25]:
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        assert wait_until(lambda: lst.open_connections == 50)
        status, _, body = get(f"http://127.0.0.1:{lst.port}/metrics", timeout=1.0)
        assert (status, body) == (200, b"up 1\n")
    finally:
        for s in idle:
            s.close()
        lst.stop()
    assert not lst.alive and lst.open_connections == 0


def test_stop_is_prompt_with_idle_clients_connected(caplog: pytest.LogCaptureFixture) -> None:
    lst = _listener(timeout=600.0)
    idle = [socket.create_connection(("127.0.0.1", lst.port)) for _ in range(5)]
    try:
        assert wait_until(lambda: lst.open_connections == 5)
        with caplog.at_level(logging.ERROR, logger="gateway.web"):
            lst.stop(timeout=5.0)
        # The handlers were woken by closing their sockets, not by their 600 s timeout.
        assert lst.open_connections == 0
        assert not [r for r in caplog.records if "did not stop" in r.getMessage()]
    finally:
        for s in idle:
            s.close()


def test_connections_beyond_the_limit_get_503_and_idle_ones_time_out() -> None:
    lst = _listener(max_connections=2, timeout=0.5)
    try:
        a = socket.create_connection(("127.0.0.1", lst.port))
        b = socket.create_connection(("127.0.0.1", lst.port))
        assert wait_until(lambda: lst.open_connections == 2)
        status, headers, _ = get(f"http://127.0.0.1:{lst.port}/metrics")
        assert status == 503 and headers.get("Retry-After") == "1"
        assert lst.refused >= 1
        # The idle ones are closed by the server after `timeout`, freeing their slots.
        a.settimeout(30)
        assert a.recv(1) == b""
        assert wait_until(lambda: lst.open_connections == 0)
        assert get(f"http://127.0.0.1:{lst.port}/metrics")[0] == 200
        a.close()
        b.close()
    finally:
        lst.stop()


def test_basic_auth_when_credentials_are_set() -> None:
    lst = _listener(credentials=("admin", "s3cret"))
    try:
        status, headers, _ = get(f"http://127.0.0.1:{lst.port}/api/status")
        assert status == 401 and headers["WWW-Authenticate"].startswith("Basic")
        assert get(f"http://127.0.0.1:{lst.port}/api/status", auth="Basic YWRtaW46d3Jvbmc=")[0] == 401
        ok = get(f"http://127.0.0.1:{lst.port}/api/status", auth="Basic YWRtaW46czNjcmV0")
        assert ok[0] == 200 and json.loads(ok[2]) == {"ok": True}
    finally:
        lst.stop()


def test_listen_forms() -> None:
    assert parse_listen("8080") == ("127.0.0.1", 8080)
    assert parse_listen(":8080") == ("127.0.0.1", 8080)
    assert parse_listen("0.0.0.0:80") == ("0.0.0.0", 80)
    assert parse_listen("[::1]:9000") == ("::1", 9000)
    for bad in ("host:", "x", "1:70000", "1:0"):
        with pytest.raises(ValueError):
            parse_listen(bad)


def test_open_to_the_network_without_a_password_is_logged_loudly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from gateway.daemon import Gateway
    from gateway.web.status import StatusPage

    cfg = parse_config(f"gateway: {{id: g}}\nbuffer: {{path: {tmp_path}/s.db}}\n"
                       "http: {listen: '0.0.0.0:18080'}\n")
    with caplog.at_level(logging.WARNING, logger="gateway.web"):
        gw = Gateway(cfg)  # built, not started: nothing binds
    try:
        assert any(isinstance(c, StatusPage) for c in gw.components)
        assert any("OPEN TO THE NETWORK WITHOUT A PASSWORD" in r.getMessage() for r in caplog.records)
    finally:
        gw.outbox.spool.close()


def test_bad_http_config_is_a_config_error(tmp_path: Path) -> None:
    from gateway.config import ConfigError

    with pytest.raises(ConfigError) as err:
        parse_config(f"gateway: {{id: g}}\nbuffer: {{path: {tmp_path}/s.db}}\nhttp: {{listen: 'x:y'}}\n")
    assert "http.listen" in str(err.value)


# -- the API of a running gateway ----------------------------------------------------------
def test_api_status_of_a_running_gateway_and_nothing_secret(tmp_path: Path, broker: Mosquitto) -> None:
    secret = "hunter2-do-not-show"
    (tmp_path / "pw").write_text(secret + "\n")
    os.chmod(tmp_path / "pw", 0o600)
    port = free_port()
    cfg = parse_config(f"""
gateway: {{id: api-test, simulate: true}}
mqtt: {{host: 127.0.0.1, port: {broker.port}, username: gw, password_file: {tmp_path}/pw}}
buffer: {{path: {tmp_path}/spool.db}}
http: {{listen: "127.0.0.1:{port}", history: 20s, history_points: 20}}
devices:
  - {{name: air, driver: bme280, address: 0x76, interval: 100ms}}
  - {{name: dead, driver: tmp102, address: 0x48, interval: 100ms, sim: {{faults: {{nack: true}}}}}}
""", name=str(tmp_path / "gw.yaml"))
    base = f"http://127.0.0.1:{port}"
    with running_gateway(cfg):
        wait_port(port, timeout=30)

        def status() -> dict[str, Any]:
            return dict(json.loads(get(base + "/api/status")[2]))

        assert wait_until(lambda: (
            (st := status())["broker"]["connected"]
            and {d["name"]: d for d in st["devices"]}["air"]["readings"] >= 3
            and {d["name"]: d for d in st["devices"]}["dead"]["state"] == "failing"
        ), timeout=60)
        st = status()
        devices = {d["name"]: d for d in st["devices"]}
        air = devices["air"]
        assert air["state"] == "ok" and air["driver"] == "bme280"
        values = {v["key"]: v for v in air["values"]}
        assert values["temperature_c"]["unit"] == "°C" and isinstance(values["temperature_c"]["value"], float)
        assert values["pressure_hpa"]["unit"] == "hPa"
        assert 0 <= air["age_s"] < 60
        dead = devices["dead"]
        assert dead["values"] == [] and "EREMOTEIO" in dead["last_error"]
        assert any(e["device"] == "dead" and e["what"].startswith("failing") for e in st["events"])
        assert st["gateway"]["id"] == "api-test" and st["spool"]["depth"] >= 0
        series = json.loads(get(base + "/api/series")[2])
        assert series["air"]["temperature_c"]["avg"], series
        # Nothing secret anywhere the listener serves.
        for path in ("/", "/status.js", "/api/status", "/api/series", "/metrics"):
            code, _, body = get(base + path)
            assert code == 200, path
            assert secret.encode() not in body, path
        assert get(base + "/nope")[0] == 404
    wait_port(port, timeout=30, up=False)


# -- the page in a real browser -------------------------------------------------------------
DEVICE_ROW = """
const row = document.querySelector('#device-air tr[data-key="temperature_c"]');
const path = row && row.querySelector('svg.sparkline path.line');
const d = path ? path.getAttribute('d') : '';
// A drawn sparkline: at least three points of history.
if (!row || (d.match(/L/g) || []).length < 2) return null;
return {value: row.querySelector('td.value').textContent,
        state: document.querySelector('#device-air .state').textContent,
        broker: document.getElementById('broker').textContent,
        dead: document.querySelector('#device-dead .state').textContent,
        deadError: document.querySelector('#device-dead .last-error').textContent};
"""


def test_status_page_in_headless_chromium(tmp_path: Path, broker: Mosquitto) -> None:
    port = free_port()
    cfg = write_config(tmp_path / "gw.yaml", f"""
gateway: {{id: page-test, simulate: true}}
mqtt: {{host: 127.0.0.1, port: {broker.port}}}
buffer: {{path: {tmp_path}/spool.db}}
http: {{listen: "{port}", history: 60s, history_points: 120}}
devices:
  - {{name: air, driver: bme280, address: 0x76, interval: 250ms}}
  - {{name: leaf, driver: sht3x, address: 0x44, interval: 250ms}}
  - {{name: dead, driver: tmp102, address: 0x48, interval: 250ms, sim: {{faults: {{nack: true}}}}}}
""")
    sub = Subscriber(broker.port, "gateway/page-test/air").start()
    gw = GatewayProcess(cfg, tmp_path / "gw.log").start()
    browser = None
    try:
        wait_port(port, timeout=60)
        browser = Browser(tmp_path / "browser")
        browser.get(f"http://127.0.0.1:{port}/")
        seen = browser.wait_for(DEVICE_ROW, timeout=90)
        assert seen["state"] == "ok" and "connected" in seen["broker"]
        assert seen["dead"] == "failing" and "EREMOTEIO" in seen["deadError"]
        # The value on the page is one the broker received for that device.
        shown = float(seen["value"].split()[0])
        assert seen["value"].endswith("°C")
        assert sub.wait_for(lambda s: s.messages)
        got = [m.json()["temperature_c"] for m in sub.messages]
        assert any(abs(v - shown) <= 0.005 + 1e-9 for v in got), (shown, got[-5:])
        # It refreshes by itself: the age text changes without a reload.
        first = browser.run("return document.querySelector('#device-air .counts').textContent")
        assert browser.wait_for(
            "return document.querySelector('#device-air .counts').textContent !== arguments[0]"
            .replace("arguments[0]", json.dumps(first)), timeout=30)
        png = browser.screenshot()
        assert png.startswith(b"\x89PNG")
        (tmp_path / "status-page.png").write_bytes(png)
        target = os.environ.get("EDGE_GATEWAY_SCREENSHOT")  # docs: regenerate the README picture
        if target:
            shutil.copy(tmp_path / "status-page.png", target)
        # A phone-sized screen: no horizontal scrolling.
        browser.set_window(400, 800)
        assert browser.wait_for(
            "return document.documentElement.scrollWidth <= window.innerWidth + 1 ? 'fits' : null",
            timeout=20) == "fits"
    finally:
        if browser is not None:
            browser.close()
        code = gw.stop()
        sub.stop()
    assert code == 0, gw.output()
    assert "status page on http://127.0.0.1:" in gw.output()


def test_scrape_is_not_delayed_while_the_gateway_is_busy(tmp_path: Path, broker: Mosquitto) -> None:
    """`metrics.listen` keeps working with idle clients connected (the old server blocked)."""
    port = free_port()
    cfg = parse_config(f"""
gateway: {{id: m, simulate: true}}
mqtt: {{host: 127.0.0.1, port: {broker.port}}}
buffer: {{path: {tmp_path}/spool.db}}
metrics: {{listen: "127.0.0.1:{port}"}}
devices:
  - {{name: air, driver: bme280, address: 0x76, interval: 50ms}}
""")
    with running_gateway(cfg):
        wait_port(port, timeout=30)
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(50)]
        try:
            code, _, body = get(f"http://127.0.0.1:{port}/metrics", timeout=1.0)
            assert code == 200 and b"edge_gateway_readings_total" in body
        finally:
            for s in idle:
                s.close()


def test_check_refuses_metrics_without_its_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import gateway.config.checks as checks

    cfg = parse_config(f"gateway: {{id: g}}\nbuffer: {{path: {tmp_path}/s.db}}\n"
                       "metrics: {listen: '127.0.0.1:9108'}\n"
                       f"http: {{listen: 8080, password_file: {tmp_path}/missing}}\n",
                       name=str(tmp_path / "gw.yaml"))
    monkeypatch.setattr(checks, "_importable", lambda module: module != "prometheus_client")
    problems = [str(p) for p in checks.run_checks(cfg)]
    assert any("metrics.listen" in p and "pip install 'edge-gateway[metrics]'" in p for p in problems)
    assert any("http.password_file" in p and "file not found" in p for p in problems)
