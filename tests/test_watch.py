"""`edge-gateway watch` (render function, --once against a real broker) and `make run`'s demo."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway.commands.watch import WatchState, format_age, parse_ts, render
from tests.support import REPO, GatewayProcess, Mosquitto, write_config


def test_state_and_render_from_messages() -> None:
    st = WatchState("gateway/gh")
    now = 1_800_000_000.0
    ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now - 3)) + ".500Z"
    st.update("gateway/gh/status", b"online", now)
    st.update("gateway/gh/air", json.dumps(
        {"seq": 17, "ts": ts, "temperature_c": 21.4, "humidity_pct": 40.2}).encode(), now)
    st.update("gateway/gh/health", json.dumps({
        "devices": {"air": {"state": "ok"}, "soil": {"state": "failing",
                                                     "last_error": "EREMOTEIO: NACK"}},
        "spool": {"depth": 3}, "broker": {"connected": True, "reconnects": 2},
    }).encode(), now)
    st.update("gateway/gh/air/extra", b"{}", now)  # deeper levels are not readings
    st.update("other/air", b"{}", now)
    text = render(st, now=now, width=0)
    lines = text.splitlines()
    assert lines[0] == ("edge-gateway watch  gateway/gh/#   gateway: online   spool: 3"
                        "   reconnects: 2")
    assert lines[2].split() == ["DEVICE", "STATE", "SEQ", "AGE", "VALUES"]
    assert lines[3].split() == ["air", "ok", "17", "2.5s", "temperature_c=21.4", "humidity_pct=40.2"]
    assert lines[4].split()[:4] == ["soil", "failing", "-", "-"]
    assert "(no reading yet)" in lines[4]
    assert lines[5] == "  soil: EREMOTEIO: NACK"
    # Columns line up: the VALUES column starts at the same offset on every row.
    assert lines[2].index("VALUES") == lines[3].index("temperature_c")
    assert "\x1b" not in text


def test_status_offline_and_bad_payloads_are_harmless() -> None:
    st = WatchState("p")
    st.update("p/status", b"offline")
    st.update("p/air", b"not json")
    st.update("p/air", b"[1, 2]")
    assert st.status == "offline" and st.rows == {}
    assert "(waiting for readings...)" in render(st)


def test_parse_ts_and_age_format() -> None:
    assert parse_ts("2026-11-25T10:00:00.123Z") == pytest.approx(1795600800.123, abs=1e-6)
    assert parse_ts("garbage") is None and parse_ts(None) is None
    assert [format_age(x) for x in (None, 0.04, 42.4, 600, 9000)] == ["-", "0.0s", "42s", "10m", "2h"]


def test_watch_once_shows_live_readings(tmp_path: Path, broker: Mosquitto) -> None:
    cfg = write_config(tmp_path / "gw.yaml", f"""
gateway: {{id: watch-test, simulate: true}}
mqtt: {{host: 127.0.0.1, port: {broker.port}}}
buffer: {{path: {tmp_path}/spool.db}}
devices:
  - {{name: air, driver: bme280, address: 0x76, interval: 200ms,
      sim: {{values: {{temperature_c: 23.5, humidity_pct: 41.0, pressure_hpa: 1009.1}}}}}}
""")
    gw = GatewayProcess(cfg, tmp_path / "gw.log").start()
    try:
        out = subprocess.run(
            [sys.executable, "-m", "gateway", "watch", "-c", str(cfg), "--once", "--timeout", "60"],
            capture_output=True, text=True, timeout=120, cwd=REPO,
        )
    finally:
        assert gw.stop() == 0, gw.output()
    assert out.returncode == 0, out.stderr
    row = next(line for line in out.stdout.splitlines() if line.startswith("air "))
    assert "temperature_c=23.5" in row and "humidity_pct=41" in row and "pressure_hpa=1009.1" in row
    assert "gateway: online" in out.stdout


def test_watch_once_with_broker_override_and_nothing_there(tmp_path: Path, broker: Mosquitto) -> None:
    cfg = write_config(tmp_path / "gw.yaml", "gateway: {id: nobody}\nmqtt: {port: 1}\n")
    out = subprocess.run(
        [sys.executable, "-m", "gateway", "watch", "-c", str(cfg), "--once", "--timeout", "2",
         "--broker", f"127.0.0.1:{broker.port}"],
        capture_output=True, text=True, timeout=60, cwd=REPO,
    )
    assert out.returncode == 1
    assert "(waiting for readings...)" in out.stdout


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for our purposes only once reaped; check its state.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_demo_shows_readings_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    """What `make run` runs, in a real pseudo-terminal: readings appear; Ctrl-C cleans up."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: become the demo
        os.chdir(REPO)
        os.execv(sys.executable, [sys.executable, "tools/demo.py", "config/simulator.yaml",
                                  "--run-dir", str(tmp_path / "run")])
    buf = b""
    reading = re.compile(rb"\nair +ok +\d+ .*temperature_c=")
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not reading.search(buf):
            ready, _, _ = select.select([fd], [], [], 1.0)
            if ready:
                try:
                    buf += os.read(fd, 65536)
                except OSError:
                    break
        assert reading.search(buf), buf.decode(errors="replace")[-3000:]
        text = buf.decode(errors="replace")
        children = _pids(text)
        assert len(children) == 2, text[:2000]
        assert all(_alive(c) for c in children)
        assert "\x1b[H" in text  # redrawn in place
        os.kill(pid, signal.SIGINT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 1.0)
            if ready:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                buf += chunk
        _, status = os.waitpid(pid, 0)
        pid = 0
    finally:
        if pid:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 0, buf.decode(errors="replace")[-3000:]
    assert b"stopped" in buf
    assert not any(_alive(c) for c in children)
    log = (tmp_path / "run" / "gateway.log").read_text()
    assert "stopped" in log  # the gateway shut down gracefully, not killed


def _pids(text: str) -> list[int]:
    broker = re.search(r"broker: .* \(pid (\d+)\)", text)
    gateway = re.search(r"gateway: pid (\d+)", text)
    return [int(m.group(1)) for m in (broker, gateway) if m]
