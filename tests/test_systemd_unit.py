"""The shipped unit file: valid for systemd, hardened to an exposure of at most 2.0.

`systemd-analyze` is installed by `make test` (Debian package `systemd`).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.support import REPO

UNIT = REPO / "systemd" / "edge-gateway.service"
INSTALLED_EXE = "/opt/edge-gateway/venv/bin/edge-gateway"


def analyze() -> str:
    found = shutil.which("systemd-analyze") or "/usr/bin/systemd-analyze"
    assert Path(found).exists(), "systemd-analyze is missing: make test installs it (apt: systemd)"
    return found


def unit_settings() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        out.setdefault(key, []).append(value)
    return out


def local_copy(tmp_path: Path) -> Path:
    """The unit with the install path of the program pointed at this checkout's entry point
    (verify checks that the executables exist)."""
    exe = Path(sys.executable).parent / "edge-gateway"
    assert exe.exists(), exe
    text = UNIT.read_text()
    assert INSTALLED_EXE in text
    unit = tmp_path / "edge-gateway.service"
    unit.write_text(text.replace(INSTALLED_EXE, str(exe)))
    return unit


def test_unit_verifies(tmp_path: Path) -> None:
    unit = local_copy(tmp_path)
    proc = subprocess.run([analyze(), "verify", str(unit)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # verify prints warnings without failing for some problems (unknown keys, bad values).
    assert "edge-gateway.service" not in proc.stderr, proc.stderr


def test_verify_catches_a_broken_unit(tmp_path: Path) -> None:
    """The check above can fail: a misspelt directive is reported."""
    unit = local_copy(tmp_path)
    unit.write_text(unit.read_text().replace("NoNewPrivileges=yes", "NoNewPrivilege=yes"))
    proc = subprocess.run([analyze(), "verify", str(unit)], capture_output=True, text=True,
                          timeout=120)
    assert "NoNewPrivilege" in proc.stderr


def exposure(unit: Path) -> float:
    proc = subprocess.run(
        [analyze(), "security", "--offline=true", "--no-pager", str(unit)],
        capture_output=True, text=True, timeout=120,
    )
    m = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", proc.stdout)
    assert m, proc.stdout + proc.stderr
    return float(m.group(1))


def test_security_exposure_at_most_2(tmp_path: Path) -> None:
    score = exposure(UNIT)
    assert score <= 2.0, score
    # For scale: the same service without the hardening block is rated unsafe.
    bare = tmp_path / "edge-gateway.service"
    keep = ("Type", "ExecStart", "User", "Group", "Description", "WantedBy")
    bare.write_text("\n".join(
        line for line in UNIT.read_text().splitlines()
        if line.startswith("[") or line.split("=", 1)[0] in keep
    ) + "\n")
    assert exposure(bare) > 8.0


def test_unit_contract() -> None:
    s = unit_settings()
    assert s["Type"] == ["notify"]
    assert s["NotifyAccess"] == ["main"]
    assert s["Restart"] == ["on-failure"]
    # The config is checked by the main process (exit 2, which RestartPreventExitStatus=
    # covers), never by an ExecStartPre= step, whose failure restarts the unit for ever.
    assert "ExecStartPre" not in s and "ExecCondition" not in s
    assert s["RestartPreventExitStatus"] == ["2"]
    assert s["ExecStart"] == [f"{INSTALLED_EXE} run -c /etc/edge-gateway/config.yaml"]
    # Reload waits for the daemon's verdict (its exit status is what systemctl reports).
    assert s["ExecReload"] == [f"{INSTALLED_EXE} reload --pid $MAINPID"]
    assert s["RuntimeDirectory"] == ["edge-gateway"]
    # Not ordered after time-sync.target (an offline Pi would take no readings); the
    # local clock source is set first.
    after = " ".join(s["After"]).split()
    assert "time-set.target" in after and "time-sync.target" not in after
    # Serial majors exist before DeviceAllow=char-ttyUSB/char-ttyACM are resolved.
    for module in ("usbserial", "cdc_acm"):
        assert f"modprobe@{module}.service" in " ".join(s["Wants"]).split()
        assert f"modprobe@{module}.service" in after
    watchdog = s["WatchdogSec"][0]
    assert watchdog.endswith("s") and float(watchdog[:-1]) >= 10
    assert s["User"] == ["edge-gateway"]
    assert set(s["SupplementaryGroups"][0].split()) == {"i2c", "dialout", "video", "gpio"}
    assert s["StateDirectory"] == ["edge-gateway"]
    assert s["ConfigurationDirectory"] == ["edge-gateway"]
    # The spool's default path lives in the state directory.
    from gateway.config.model import BufferSection

    assert str(BufferSection().path).startswith("/var/lib/edge-gateway/")
    # Devices: closed policy, but I2C, serial and cameras reachable (PrivateDevices
    # would hide /dev/i2c-1; PrivateUsers would break group-based device access).
    assert s["DevicePolicy"] == ["closed"]
    allowed = {v.split()[0] for v in s["DeviceAllow"]}
    assert {"char-i2c", "char-ttyUSB", "char-ttyACM", "char-ttyAMA", "char-video4linux"} <= allowed
    assert "PrivateDevices" not in s and "PrivateUsers" not in s
    assert s["CapabilityBoundingSet"] == [""]
    assert s["NoNewPrivileges"] == ["yes"]
    assert s["ProtectSystem"] == ["strict"]
