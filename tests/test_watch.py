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
from typing import Any

import pytest

from gateway.commands.watch import WatchState, format_age, parse_broker, render
from gateway.reading import parse_ts
from tests.support import REPO, GatewayProcess, Mosquitto, free_port, write_config

EDGE_GATEWAY = [sys.executable, "-m", "gateway"]


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*EDGE_GATEWAY, *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


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
    assert lines[4].split()[:4] == ["soil", "failing", "-", "-"]  # failing: health says why
    assert "(no reading yet)" in lines[4]
    assert lines[5] == "  soil: EREMOTEIO: NACK"
    # Columns line up: the VALUES column starts at the same offset on every row.
    assert lines[2].index("VALUES") == lines[3].index("temperature_c")
    assert "\x1b" not in text


def test_no_ok_beside_no_reading_yet() -> None:
    """Health says "ok" before a reading reached the table: the table says it waits."""
    st = WatchState("gateway/gh", expected=["air", "co2"])
    st.update("gateway/gh/health", json.dumps(
        {"devices": {"air": {"state": "ok"}, "co2": {"state": "ok"}}}).encode())
    st.update("gateway/gh/air", json.dumps({"seq": 1, "temperature_c": 20.5}).encode())
    rows = {line.split()[0]: line.split() for line in render(st, width=0).splitlines()[3:]}
    assert rows["air"][1] == "ok"
    assert rows["co2"][1] == "waiting" and "(no reading yet)" in " ".join(rows["co2"])


def test_rows_fit_the_terminal_width() -> None:
    st = WatchState("gateway/demo")
    values = {f"quantity_{i}_pct": 10.0 + i for i in range(12)}
    st.update("gateway/demo/wide", json.dumps({"seq": 3, **values}).encode())
    st.update("gateway/demo/long", json.dumps({"seq": 1, "text": "x" * 300}).encode())
    st.update("gateway/demo/health", json.dumps({"devices": {"wide": {
        "state": "failing", "last_error": "EREMOTEIO: " + "y" * 200}}}).encode())
    for width in (50, 80, 120):
        lines = render(st, width=width).splitlines()
        assert all(len(line) <= width for line in lines), (width, lines)
        text = "\n".join(lines)
        # Wrapped between items, never inside one: every value is there, whole.
        for k, v in values.items():
            assert f"{k}={v:g}" in text
        assert "text=xxx" in text and "…" in text  # an item longer than the room is cut
        start = lines[2].index("VALUES")
        cont = [ln for ln in lines if ln.startswith(" " * start + "quantity_")]
        assert cont  # continuation lines start in the VALUES column
    assert max(len(line) for line in render(st, width=0).splitlines()) > 300  # not a tty: whole


def test_wildcard_prefix_settles_on_the_first_gateway() -> None:
    st = WatchState("gateway/+")
    st.update("gateway/gh1/status", b"online")
    st.update("gateway/gh1/air", json.dumps({"seq": 1, "t_c": 1.0}).encode())
    st.update("gateway/gh2/air", json.dumps({"seq": 9, "t_c": 2.0}).encode())
    assert st.prefix == "gateway/gh1" and st.status == "online"
    assert st.rows["air"].seq == 1 and st.others == {"gateway/gh2"}
    assert "other gateways on this broker: gateway/gh2" in render(st, width=0)


def test_parse_broker() -> None:
    assert parse_broker("pi.local") == ("pi.local", 1883)
    assert parse_broker("10.0.0.5:1884") == ("10.0.0.5", 1884)
    assert parse_broker(":1885") == ("127.0.0.1", 1885)
    assert parse_broker("[::1]:1886") == ("::1", 1886)
    assert parse_broker("host:port") is None and parse_broker("h:70000") is None


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
        out = cli("watch", "-c", str(cfg), "--once", "--timeout", "60")
        # Only the broker: no config, the gateway found under gateway/+.
        bare = cli("watch", "--broker", f"127.0.0.1:{broker.port}", "--once", "--timeout", "60")
    finally:
        assert gw.stop() == 0, gw.output()
    for result in (out, bare):
        assert result.returncode == 0, result.stderr
        row = next(line for line in result.stdout.splitlines() if line.startswith("air "))
        assert row.split()[1] == "ok"
        assert "temperature_c=23.5" in row and "humidity_pct=41" in row and "pressure_hpa=1009.1" in row
        assert "gateway: online" in result.stdout
    assert "gateway/watch-test/#" in bare.stdout


def test_watch_once_with_broker_override_and_nothing_there(tmp_path: Path, broker: Mosquitto) -> None:
    cfg = write_config(tmp_path / "gw.yaml", "gateway: {id: nobody}\nmqtt: {port: 1}\n")
    out = cli("watch", "-c", str(cfg), "--once", "--timeout", "2",
              "--broker", f"127.0.0.1:{broker.port}", timeout=60)
    assert out.returncode == 1
    assert "(waiting for readings...)" in out.stdout
    # Connected, nothing published: it says so, on stderr.
    assert "no reading under gateway/nobody/# within 2 s" in out.stderr


def test_watch_says_when_the_broker_is_unreachable() -> None:
    port = free_port()  # nothing listens there
    out = cli("watch", "--broker", f"127.0.0.1:{port}", "--once", "--timeout", "3", timeout=60)
    assert out.returncode == 1
    assert (f"cannot connect to 127.0.0.1:{port}: Connection refused — is the gateway's broker "
            "running?") in out.stderr, out.stderr


def test_watch_live_view_shows_the_connection_problem() -> None:
    """The live view (not --once) says why nothing arrives instead of waiting silently."""
    import io

    from gateway.commands.watch import Broker, watch

    port = free_port()

    class Screen(io.StringIO):
        def write(self, text: str) -> int:
            n = super().write(text)
            if "cannot connect" in self.getvalue():
                raise KeyboardInterrupt  # what Ctrl-C does; the test has seen enough
            return n

    screen = Screen()
    assert watch(Broker(port=port), out=screen, interval=0.2) == 0
    assert f"cannot connect to 127.0.0.1:{port}: Connection refused" in screen.getvalue()


def test_unreadable_config_says_what_to_do(tmp_path: Path, mocker: Any,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """The installed config is root:edge-gateway 0640; a normal user cannot read it. (Made
    unreadable by the loader here, as root reads any file.)"""
    from gateway.cli import main
    from gateway.config import ConfigError, Problem

    path = "/etc/edge-gateway/config.yaml"
    mocker.patch("gateway.config.load_config", side_effect=ConfigError(
        [Problem(path, 0, "(file)", "cannot read: Permission denied")]))
    assert main(["watch", "-c", path, "--once"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{path}:0: (file): cannot read: Permission denied: run as a member of "
                          "group edge-gateway")
    assert "with sudo, or pass --broker HOST[:PORT] [--prefix TOPIC] without -c" in err
    assert main(["check", "-c", path]) == 2
    assert "sudo usermod -aG edge-gateway $USER" in capsys.readouterr().err


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
    # openpty + Popen, not pty.fork(): forking a multi-threaded pytest process can
    # deadlock the child (Python 3.12 warns).
    fd, tty = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "tools/demo.py", "config/simulator.yaml", "--run-dir",
         str(tmp_path / "run")], stdin=tty, stdout=tty, stderr=tty, cwd=REPO,
        start_new_session=True)
    os.close(tty)
    pid = proc.pid
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
        code = proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        os.close(fd)
    assert code == 0, buf.decode(errors="replace")[-3000:]
    assert b"stopped" in buf
    assert not any(_alive(c) for c in children)
    log = (tmp_path / "run" / "gateway.log").read_text()
    assert "stopped" in log  # the gateway shut down gracefully, not killed


def _pids(text: str) -> list[int]:
    broker = re.search(r"broker: .* \(pid (\d+)\)", text)
    gateway = re.search(r"gateway: pid (\d+)", text)
    return [int(m.group(1)) for m in (broker, gateway) if m]
