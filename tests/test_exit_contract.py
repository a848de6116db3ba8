"""What systemd sees: exit statuses and priorities of `check`, `run` and `reload`.

- An invalid config makes `run` (the unit's main process) exit 2, which
  `RestartPreventExitStatus=2` keeps from restarting in a loop; there is no
  ExecStartPre= check any more (tests/test_systemd_unit.py).
- Under the journal (JOURNAL_STREAM names stderr) every problem line carries
  `<3>`, so `journalctl -p err` shows the reason; in a terminal, plain lines.
- `edge-gateway reload --pid PID` (the unit's ExecReload=) exits 1 when the
  daemon rejects the new config, 0 when it applied it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import REPO, GatewayProcess, Mosquitto, free_port, wait_until, write_config
from tests.test_sd_notify import NotifySocket, short_dir

__all__ = ["short_dir"]  # a fixture: AF_UNIX paths must stay under 108 bytes

BAD = """
gateway: {id: Bad Id, simulate: true}
mqtt: {host: 127.0.0.1, port: 1883, qos: 7}
"""


def stream_id(path: Path) -> str:
    st = os.stat(path)
    return f"{st.st_dev}:{st.st_ino}"


def gateway_cmd(args: list[str], stderr: Path, journal: bool,
                env: dict[str, str] | None = None,
                timeout: float = 60) -> tuple[int, list[str], str]:
    """Run `python -m gateway ARGS` with stderr in a file (the journal, if `journal`)."""
    full = {k: v for k, v in os.environ.items() if k != "JOURNAL_STREAM"}
    full.update(env or {})
    stderr.write_bytes(b"")
    if journal:
        full["JOURNAL_STREAM"] = stream_id(stderr)
    with open(stderr, "wb") as err:
        proc = subprocess.run([sys.executable, "-m", "gateway", *args], stdout=subprocess.PIPE,
                              stderr=err, env=full, cwd=REPO, timeout=timeout, text=True)
    return proc.returncode, stderr.read_text().splitlines(), proc.stdout


@pytest.mark.parametrize("command", ["check", "run"])
def test_invalid_config_exits_2_with_err_priority_under_the_journal(tmp_path: Path,
                                                                    command: str) -> None:
    cfg = write_config(tmp_path / "bad.yaml", BAD)
    code, lines, _ = gateway_cmd([command, "-c", str(cfg)], tmp_path / "err", journal=True)
    assert code == 2
    assert len(lines) == 2, lines  # gateway.id and mqtt.qos
    for line in lines:
        assert re.match(rf"^<3>{re.escape(str(cfg))}:\d+: (gateway\.id|mqtt\.qos): ", line), line

    # In a terminal: the same lines without the prefix.
    code, lines, _ = gateway_cmd([command, "-c", str(cfg)], tmp_path / "err", journal=False)
    assert code == 2
    assert len(lines) == 2 and all(line.startswith(str(cfg)) for line in lines), lines


def test_run_checks_referenced_files_before_starting(tmp_path: Path) -> None:
    """What ExecStartPre=check used to catch, `run` now catches itself: exit 2, `<3>`."""
    cfg = write_config(tmp_path / "gw.yaml", f"""
gateway: {{id: files, simulate: true}}
mqtt: {{host: 127.0.0.1, port: {free_port()}, username: gw,
        password_file: {tmp_path}/no-such-password}}
buffer: {{path: {tmp_path}/spool.db}}
""")
    code, lines, _ = gateway_cmd(["run", "-c", str(cfg)], tmp_path / "err", journal=True)
    assert code == 2
    assert lines == [f"<3>{cfg}:4: mqtt.password_file: file not found: "
                     f"{tmp_path}/no-such-password"], lines
    assert not (tmp_path / "spool.db").exists()  # nothing was started


def reload_config(tmp_path: Path, port: int, interval: str = "200ms") -> str:
    return f"""
gateway: {{id: reload-cmd, simulate: true, stop_timeout: 1s}}
mqtt: {{host: 127.0.0.1, port: {port}}}
buffer: {{path: {tmp_path}/spool.db}}
devices:
  - {{name: air, driver: tmp102, address: 0x48, interval: {interval}}}
"""


def test_reload_command_reports_the_daemons_verdict(tmp_path: Path, broker: Mosquitto,
                                                    short_dir: Path) -> None:
    env = {"RUNTIME_DIRECTORY": str(short_dir)}
    cfg = write_config(tmp_path / "gw.yaml", reload_config(tmp_path, broker.port))
    gw = GatewayProcess(cfg, tmp_path / "gw.log", env=env).start()
    try:
        assert gw.proc is not None
        assert wait_until(lambda: "started:" in gw.output(), timeout=60), gw.output()
        reload = ["reload", "--pid", str(gw.proc.pid), "--timeout", "60"]

        # A valid change: applied, exit 0.
        write_config(cfg, reload_config(tmp_path, broker.port, interval="300ms"))
        code, lines, out = gateway_cmd(reload, tmp_path / "err", journal=True, env=env)
        assert code == 0, lines
        assert "applied (1 devices: 0 added, 1 changed" in out, out

        # An invalid file: rejected, exit 1, each reason at priority err.
        write_config(cfg, BAD)
        code, lines, out = gateway_cmd(reload, tmp_path / "err", journal=True, env=env)
        assert code == 1
        assert any(re.match(rf"^<3>reload: {re.escape(str(cfg))}:\d+: mqtt\.qos: ", line)
                   for line in lines), lines
        assert lines[-1] == (f"<3>reload: {cfg} is invalid; still running on the previous "
                             "configuration")
        assert gw.proc.poll() is None  # still running

        # Fixed again: unchanged from what runs (the 300ms version), exit 0.
        write_config(cfg, reload_config(tmp_path, broker.port, interval="300ms"))
        code, lines, out = gateway_cmd(reload, tmp_path / "err", journal=False, env=env)
        assert code == 0, lines
        assert "unchanged" in out
        assert not (short_dir / "reload.sock").exists()  # cleaned up after each wait
    finally:
        assert gw.stop() == 0, gw.output()


def test_reload_command_without_a_daemon_fails(tmp_path: Path, short_dir: Path) -> None:
    env = {"RUNTIME_DIRECTORY": str(short_dir)}
    # A process that ignores SIGHUP and never answers: no verdict within the timeout.
    sleeper = subprocess.Popen([sys.executable, "-c",
                                "import signal, time\n"
                                "signal.signal(signal.SIGHUP, signal.SIG_IGN)\n"
                                "time.sleep(60)\n"])
    try:
        code, lines, _ = gateway_cmd(["reload", "--pid", str(sleeper.pid), "--timeout", "0.5"],
                                     tmp_path / "err", journal=True, env=env)
        assert code == 1
        assert lines == [f"<3>reload: no answer from the daemon (pid {sleeper.pid}) within "
                         "0.5 s"], lines
    finally:
        sleeper.kill()
        sleeper.wait(10)
    code, lines, _ = gateway_cmd(["reload", "--pid", str(sleeper.pid)], tmp_path / "err",
                                 journal=False, env=env)
    assert code == 1
    assert lines == [f"reload: cannot signal the daemon (pid {sleeper.pid}): "
                     "No such process"], lines


def test_status_follows_the_broker_at_once(tmp_path: Path, short_dir: Path) -> None:
    """STATUS= changes when the broker comes up, not at the next 30 s status tick."""
    port = free_port()
    ns = NotifySocket(str(short_dir / "notify"))
    cfg = write_config(tmp_path / "gw.yaml", f"""
gateway: {{id: status-now, simulate: true, stop_timeout: 1s}}
mqtt: {{host: 127.0.0.1, port: {port}, reconnect_min: 200ms, reconnect_max: 500ms}}
buffer: {{path: {tmp_path}/spool.db}}
devices:
  - {{name: air, driver: tmp102, address: 0x48, interval: 200ms}}
""")
    gw = GatewayProcess(cfg, tmp_path / "gw.log", env={"NOTIFY_SOCKET": str(short_dir / "notify")})
    broker = Mosquitto(tmp_path / "broker", port=port)
    gw.start()
    try:
        ready = ns.wait_for(lambda m: m.get("READY") == "1", timeout=60)
        assert "disconnected" in ready["STATUS"], ready
        broker.start()
        # Well inside the 30 s tick (no watchdog here): the state change itself sends it.
        ns.wait_for(lambda m: f"broker 127.0.0.1:{port} connected" in m.get("STATUS", ""),
                    timeout=15)
    finally:
        assert gw.stop() == 0, gw.output()
        broker.stop()
        ns.close()
