"""Logging under systemd: with stderr connected to the journal (JOURNAL_STREAM names
stderr's device:inode), lines carry syslog priority prefixes and no timestamps, so
`journalctl -p err` selects errors (sd-daemon(3)); elsewhere, timestamps and level names."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

from tests.support import REPO, GatewayProcess, free_port, write_config

SCRIPT = """
import logging
from gateway.logs import setup_logging
setup_logging("debug")
log = logging.getLogger("gateway.test")
log.debug("d"); log.info("i"); log.warning("w"); log.error("e"); log.critical("c")
try:
    raise ValueError("boom")
except ValueError:
    log.exception("failed")
"""


def run_script(stderr_file: Path, journal_stream: str | None) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k != "JOURNAL_STREAM"}
    if journal_stream is not None:
        env["JOURNAL_STREAM"] = journal_stream
    with open(stderr_file, "wb") as f:
        subprocess.run([sys.executable, "-c", SCRIPT], stderr=f, env=env, cwd=REPO, check=True,
                       timeout=60)
    return stderr_file.read_text().splitlines()


def stream_id(path: Path) -> str:
    st = os.stat(path)
    return f"{st.st_dev}:{st.st_ino}"


def test_priority_prefixes_when_stderr_is_the_journal(tmp_path: Path) -> None:
    err = tmp_path / "stderr"
    err.touch()
    lines = run_script(err, stream_id(err))
    assert lines[:5] == [
        "<7>gateway.test: d", "<6>gateway.test: i", "<4>gateway.test: w",
        "<3>gateway.test: e", "<2>gateway.test: c",
    ]
    # A traceback stays one record: every line carries the error priority.
    tb = lines[5:]
    assert tb[0] == "<3>gateway.test: failed"
    assert len(tb) > 2 and all(line.startswith("<3>") for line in tb)
    assert tb[-1] == "<3>ValueError: boom"


def test_plain_format_elsewhere(tmp_path: Path) -> None:
    err = tmp_path / "stderr"
    err.touch()
    other = tmp_path / "other"
    other.touch()
    # JOURNAL_STREAM inherited from a parent whose stderr was the journal, but ours
    # is redirected elsewhere: no prefixes.
    for stream in (None, stream_id(other), "garbage"):
        lines = run_script(err, stream)
        assert re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} DEBUG   gateway.test: d$",
                        lines[0]), lines[0]
        assert not any(line.startswith("<") for line in lines)


def test_daemon_under_journal_logs_with_priorities(tmp_path: Path) -> None:
    # No broker on that port: the connection failure is logged as a warning.
    cfg = write_config(tmp_path / "gw.yaml", f"""
gateway: {{id: journal-test, simulate: true, stop_timeout: 1s}}
mqtt: {{host: 127.0.0.1, port: {free_port()}}}
buffer: {{path: {tmp_path}/spool.db}}
devices:
  - {{name: air, driver: bme280, address: 0x76, interval: 200ms}}
  - {{name: missing, driver: tmp102, address: 0x48, interval: 200ms,
      sim: {{faults: {{nack: true}}}}}}
""")
    log = tmp_path / "gw.log"
    log.touch()
    gw = GatewayProcess(cfg, log, env={"JOURNAL_STREAM": stream_id(log)}).start()
    try:
        expected = ("cannot connect to 127.0.0.1", "missing: failing")
        deadline = time.monotonic() + 30
        while not all(t in gw.output() for t in expected):
            assert time.monotonic() < deadline, gw.output()
            time.sleep(0.2)
    finally:
        assert gw.stop() == 0
    lines = [line for line in gw.output().splitlines() if line]
    assert all(re.match(r"^<[0-7]>", line) for line in lines), lines[:5]
    assert not any(re.search(r"\d\d:\d\d:\d\d", line) for line in lines)  # journald stamps
    started = [line for line in lines if "started:" in line]
    assert started and started[0].startswith("<6>gateway: ")
    # The broker is down: a warning; the failing device: a warning.
    assert any(line.startswith("<4>gateway.mqtt: cannot connect") for line in lines)
    assert any(line.startswith("<4>gateway.readers: missing: failing") for line in lines)
