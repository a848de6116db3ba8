"""What a new user meets after set-up: the default config path, `test`, `check`'s warnings,
device hints, and sub-command help."""

from __future__ import annotations

import errno
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from pytest_mock import MockerFixture

from gateway.cli import DEFAULT_CONFIG, build_parser
from gateway.cli import main as cli_main
from gateway.device_hints import ENABLE_I2C, hint, hint_for
from gateway.readers.base import describe
from tests.support import REPO, write_config


@pytest.mark.parametrize("command", ["run", "check", "test", "watch"])
def test_config_defaults_to_the_installed_one(command: str, mocker: MockerFixture,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    seen: list[str] = []

    def load(path: str) -> None:
        seen.append(str(path))
        from gateway.config import ConfigError, Problem

        raise ConfigError([Problem(str(path), 0, "(file)", "no such file")])

    mocker.patch("gateway.config.load_config", side_effect=load)
    assert cli_main([command]) == 2
    assert seen == [DEFAULT_CONFIG]
    err = capsys.readouterr().err
    assert err.startswith(f"{DEFAULT_CONFIG}:0: (file): no such file (the default config; "
                          "pass -c FILE, or install the service with sudo make install")


def test_every_command_has_a_description_and_examples() -> None:
    import argparse

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name in ("run", "check", "test", "watch"):
        text = sub.choices[name].format_help()
        assert "examples:" in text and "edge-gateway " + name in text, name
    run_help = sub.choices["run"].format_help()
    for word in ("SIGTERM", "SIGHUP", "exit status", "journalctl"):
        assert word in run_help


def test_test_command_reads_every_simulated_device_once(tmp_path: Path) -> None:
    """`edge-gateway test` on the demo config: every device answers, no broker involved
    (config/simulator.yaml points at port 1883; nothing needs to listen there)."""
    out = subprocess.run([sys.executable, "-m", "gateway", "test", "-c", "config/simulator.yaml"],
                         capture_output=True, text=True, timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stderr
    rows = {line.split()[0]: line.split() for line in out.stdout.splitlines()}
    assert set(rows) == {"air", "soil", "leaf", "light", "co2", "gps", "mcu", "meter", "probes", "dht",
                         "pi", "door", "rain"}
    assert all(r[2] == "ok" for r in rows.values())
    assert any(v.startswith("temperature_c=") for v in rows["air"])
    assert any(v.startswith("co2_ppm=") for v in rows["co2"])
    assert "voltage_v=230.4" in rows["meter"]
    assert "pulses_total=" in " ".join(rows["rain"]) and "closed=" in " ".join(rows["door"])
    assert "13 of 13 devices read" in out.stderr


def test_test_command_fails_with_the_reason(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config(tmp_path / "hw.yaml", f"""
gateway: {{id: t, simulate: false}}
buffer: {{path: {tmp_path}/spool.db}}
devices:
  - {{name: air, driver: bme280, bus: 250, interval: 1s}}
  - {{name: gps, driver: nmea, port: {tmp_path}/ttyUSB9}}
""")
    assert cli_main(["test", "-c", str(cfg), "--timeout", "20"]) == 1
    out = capsys.readouterr()
    lines = {line.split()[0]: line for line in out.out.splitlines()}
    assert "FAILING" in lines["air"] and ENABLE_I2C in lines["air"]
    assert "FAILING" in lines["gps"]
    assert "0 of 2 devices read" in out.err


def test_check_warns_about_what_run_would_trip_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    cfg = write_config(tmp_path / "c.yaml", f"""
gateway: {{id: t, simulate: false}}
buffer: {{path: {locked}/spool.db}}
devices:
  - {{name: air, driver: bme280, bus: 250}}
  - {{name: gps, driver: nmea, port: /dev/ttyUSB-not-here}}
""")
    # A spool directory this user cannot write (root can write anywhere: made so here).
    real_access = os.access

    def access(path: object, mode: int, **kw: object) -> bool:
        if Path(str(path)) == locked and mode & os.W_OK:
            return False
        return real_access(path, mode)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "access", access)
    assert cli_main(["check", "-c", str(cfg)]) == 0
    monkeypatch.undo()
    out = capsys.readouterr()
    assert out.out.strip() == f"{cfg}: ok (2 devices; 3 warnings above)"
    err = out.err.splitlines()
    assert err[0].startswith(f"{cfg}:3: buffer.path: warning: cannot create {locked}/spool.db "
                             f"({locked} is not writable) for user ")
    assert "sudo -u edge-gateway edge-gateway run -c" in err[0]
    assert err[1] == (f"{cfg}:5: devices.0.bus: warning: /dev/i2c-250 does not exist: {ENABLE_I2C}")
    assert err[2].startswith(f"{cfg}:6: devices.1.port: warning: /dev/ttyUSB-not-here does not "
                             "exist: is it plugged in?")


def test_one_device_is_not_plural(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config(tmp_path / "c.yaml", f"""
gateway: {{id: t, simulate: true}}
buffer: {{path: {tmp_path}/spool.db}}
devices:
  - {{name: air, driver: bme280}}
""")
    assert cli_main(["check", "-c", str(cfg)]) == 0
    assert capsys.readouterr().out.strip() == f"{cfg}: ok (1 device)"


def test_device_hints() -> None:
    assert hint("/dev/i2c-1", errno.ENOENT) == ENABLE_I2C
    denied = hint("/dev/i2c-1", errno.EACCES)
    assert denied is not None and denied.startswith("add the user to group ")
    assert "usermod -aG" in denied
    assert hint("/dev/ttyUSB0", errno.ENOENT) is not None
    assert hint("/dev/ttyUSB0", errno.EIO) is None
    # smbus2 raises with a filename; pyserial folds path and errno into its message.
    smbus_err = FileNotFoundError(errno.ENOENT, "No such file or directory", "/dev/i2c-1")
    assert describe(smbus_err) == ("ENOENT: No such file or directory (/dev/i2c-1): " + ENABLE_I2C)
    import serial

    pyserial_err = serial.SerialException(
        errno.EACCES, "could not open port /dev/ttyUSB0: [Errno 13] Permission denied: '/dev/ttyUSB0'")
    advice = hint_for(pyserial_err)
    assert advice is not None and advice.startswith("add the user to group ")
    assert hint_for(OSError(errno.EREMOTEIO, "Remote I/O error")) is None  # a NACK: no advice


def test_run_by_hand_on_the_services_spool_says_whose_it_is(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mocker: MockerFixture,
        capsys: pytest.CaptureFixture[str]) -> None:
    """After `make install` the spool directory belongs to edge-gateway; a user running
    the daemon by hand is told to run it as that user (root could open it: made so here)."""
    locked = tmp_path / "state"
    locked.mkdir()
    cfg = write_config(tmp_path / "c.yaml", f"""
gateway: {{id: t, simulate: true}}
buffer: {{path: {locked}/spool.db}}
devices: [{{name: air, driver: bme280}}]
""")
    from gateway.outbox.spool import SpoolError

    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: (
        False if Path(str(path)) == locked else real_access(path, mode)))
    import gateway.commands.run

    mocker.patch.object(gateway.commands.run, "Gateway", side_effect=SpoolError(
        f"cannot open the spool {locked}/spool.db: unable to open database file"))
    assert cli_main(["run", "-c", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{cfg}: buffer.path: cannot open the spool {locked}/spool.db: ")
    assert f"run it by hand as that user (sudo -u edge-gateway edge-gateway run -c {cfg})" in err


def _make_dry_run(target: str, tmp_path: Path) -> list[str]:
    """What `make TARGET` would run from nothing (a venv that does not exist yet)."""
    out = subprocess.run(["make", "-n", f"VENV={tmp_path}/venv", target], capture_output=True,
                         text=True, timeout=60, cwd=REPO)
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


def test_make_run_installs_what_the_demo_needs_and_says_so(tmp_path: Path) -> None:
    import yaml

    lines = _make_dry_run("run", tmp_path)
    installs = [ln for ln in lines if "pip install" in ln and " -e '" in ln]
    assert len(installs) == 1, lines  # one install, the runtime one
    extras = set(re.search(r"-e '\.\[([a-z_,]+)\]'", installs[0]).group(1).split(","))  # type: ignore[union-attr]
    assert "test" not in extras  # no pytest, ruff, mypy, hypothesis for a demo
    # Exactly what config/simulator.yaml uses.
    demo = yaml.safe_load((REPO / "config/simulator.yaml").read_text())
    needed = {"modbus"} if any(d.get("driver") == "modbus_rtu" for d in demo["devices"]) else set()
    needed |= {"inference"} if demo.get("inference", {}).get("enabled") else set()
    needed |= {"metrics"} if (demo.get("metrics") or {}).get("listen") else set()
    assert extras == needed
    said = "\n".join(ln for ln in lines if ln.lstrip().startswith("echo") or "echo \"" in ln)
    assert "creating " in said and "about a minute the first time" in said
    # `make test` adds the test extra on top of the same runtime step.
    test_lines = _make_dry_run("test", tmp_path)
    assert installs[0] in test_lines
    assert any("-e '.[test]'" in ln for ln in test_lines)
