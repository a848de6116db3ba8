"""`edge-gateway scan`: presence probing, naming chips by id register or address, sim and real buses."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pytest_mock import MockerFixture

from gateway.cli import main as cli_main
from gateway.commands.scan import scan_bus, sim_layout, simulated_bus
from hardware_sim.chips.bme280 import BME280Chip
from hardware_sim.chips.bmp280 import BMP280Chip
from hardware_sim.chips.sht3x import SHT3xChip
from hardware_sim.chips.tmp102 import TMP102Chip
from hardware_sim.i2c import RegisterChip, SimBus, SimClock
from tests.support import REPO


def test_simulate_lists_every_chip(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["scan", "--simulate"]) == 0
    out = capsys.readouterr().out
    assert f"bus 1 (simulated): {len(sim_layout())} devices" in out
    listing, _, snippet = out.partition("\n\n")
    lines = {line.split()[0]: line for line in listing.splitlines()[1:]}
    assert sorted(lines) == sorted(f"0x{a:02x}" for a in sim_layout().values())
    assert snippet.startswith("# Ready to paste into the config")
    assert "bme280 (id 0x60 at register 0xd0)" in lines["0x76"]
    assert "bmp280 (id 0x58 at register 0xd0)" in lines["0x77"]
    assert "bh1750 (by address)" in lines["0x23"]
    assert "aht20 (by address)" in lines["0x38"]
    for chip in ("sht3x", "sht4x"):
        assert chip in lines["0x44"] and chip in lines["0x45"]
    assert "tmp102" in lines["0x48"] and "ads1115" in lines["0x49"]
    assert "scd4x (by address)" in lines["0x62"]


def test_id_register_decides_between_bme280_and_bmp280() -> None:
    clock = SimClock(0.0)
    bus = SimBus(1, [BMP280Chip(0x76, clock=clock), BME280Chip(0x77, clock=clock)])
    found = {f.address: f for f in scan_bus(bus)}
    assert found[0x76].chips == ["bmp280"]
    assert found[0x77].chips == ["bme280"]


def test_unknown_id_and_unknown_address() -> None:
    clock = SimClock(0.0)
    odd = RegisterChip(0x76, clock=clock)  # answers, but 0xD0 holds 0x00
    stranger = RegisterChip(0x10, clock=clock)
    found = {f.address: f for f in scan_bus(SimBus(1, [odd, stranger]))}
    assert found[0x76].chips == [] and found[0x76].describe() == "0x76  unknown chip"
    assert found[0x10].chips == []


def test_absent_and_nacking_chips_are_not_listed() -> None:
    from hardware_sim.i2c import Faults

    clock = SimClock(0.0)
    bus = SimBus(1, [TMP102Chip(0x48, clock=clock, faults=Faults(nack=True)),
                     TMP102Chip(0x49, clock=clock, faults=Faults(absent_until=10.0)),
                     TMP102Chip(0x4A, clock=clock)])
    assert [f.address for f in scan_bus(bus)] == [0x4A]


class RecordingBus(SimBus):
    def __init__(self, chips: list[Any]) -> None:
        super().__init__(1, chips)
        self.calls: list[tuple[str, int]] = []

    def read_byte(self, i2c_addr: int, force: bool | None = None) -> int:
        self.calls.append(("read_byte", i2c_addr))
        return super().read_byte(i2c_addr, force)

    def write_quick(self, i2c_addr: int, force: bool | None = None) -> None:
        self.calls.append(("write_quick", i2c_addr))
        super().write_quick(i2c_addr, force)


def test_probes_like_i2cdetect() -> None:
    bus = RecordingBus([SHT3xChip(0x44, clock=SimClock(0.0))])
    scan_bus(bus)
    kinds = dict((addr, kind) for kind, addr in bus.calls)
    assert kinds[0x50] == "read_byte" and kinds[0x30] == "read_byte"  # EEPROM / write-protect ranges
    assert kinds[0x44] == "write_quick" and kinds[0x03] == "write_quick"
    assert min(kinds) == 0x03 and max(kinds) == 0x77


def test_config_marks_configured_devices_and_missing_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "sim.yaml"
    cfg.write_text("""
gateway: {id: scan-test, simulate: true}
devices:
  - {name: air, driver: bme280, address: 0x76}
  - {name: leaf, driver: sht3x, address: 0x44}
  - {name: late, driver: bh1750, address: 0x23, sim: {faults: {absent_for: 1h}}}
""")
    assert cli_main(["scan", "-c", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "bus 1 (simulated): 2 devices" in out
    assert "0x44  sht3x or ina219 or sht4x (by address)  <- configured: leaf (sht3x)" in out
    assert "0x76  bme280 (id 0x60 at register 0xd0)  <- configured: air (bme280)" in out
    assert "0x23  no answer  <- configured: late (bh1750)" in out


def test_bad_config_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("gateway: {id: x, simulate: true}\ndevices:\n  - {name: a, driver: sht3x, "
                   "sim: {faults: {explode: true}}}\n")
    assert cli_main(["scan", "-c", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "bad.yaml:3: devices.0.sim" in err and "explode" in err


def test_missing_real_bus_is_reported(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["scan", "--bus", "250"]) == 1
    assert ("cannot open /dev/i2c-250: No such file or directory: enable I2C with "
            "'sudo raspi-config nonint do_i2c 0'") in capsys.readouterr().err


def test_real_bus_path_uses_smbus2(mocker: MockerFixture, capsys: pytest.CaptureFixture[str]) -> None:
    # /dev/i2c-1 cannot exist here: stand the simulated bus in for smbus2.SMBus.
    sim = simulated_bus(1)
    closed: list[bool] = []
    mocker.patch.object(sim, "close", lambda: closed.append(True))
    opener = mocker.patch("smbus2.SMBus", return_value=sim)
    assert cli_main(["scan", "--bus", "1"]) == 0
    opener.assert_called_once_with(1)
    assert closed == [True]
    out = capsys.readouterr().out
    assert out.startswith(f"bus 1 (/dev/i2c-1): {len(sim_layout())} devices")


def test_command_is_registered_in_the_cli() -> None:
    done = subprocess.run([sys.executable, "-m", "gateway", "scan", "--simulate"], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "0x76  bme280" in done.stdout


def test_snippet_is_a_valid_config_for_the_chips_found(capsys: pytest.CaptureFixture[str]) -> None:
    """What scan prints after the listing pastes into a config as it is, one device per chip."""
    import yaml

    from gateway.config import parse_config

    assert cli_main(["scan", "--simulate"]) == 0
    snippet = capsys.readouterr().out.partition("\n\n")[2]
    cfg = parse_config("gateway: {id: pasted, simulate: true}\n" + snippet)
    by_address = {d.address: d.driver for d in cfg.devices}  # type: ignore[attr-defined]
    assert by_address == {a: d for d, a in sim_layout().items() if d not in (
        "sht4x", "tmp102", "sht3x", "ads1115")} | {
        0x44: "ina219", 0x45: "ina219", 0x48: "ads1115", 0x49: "ads1115"}
    # The chip named by its id register has no alternatives; the guesses list theirs.
    assert "or: sht3x, sht4x" in snippet and "bme280_76" in snippet
    assert yaml.safe_load(snippet)["devices"][0]["name"] == "bh1750_23"


def test_configured_chips_are_not_in_the_snippet(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("gateway: {id: s, simulate: true}\n"
                   "devices:\n  - {name: air, driver: bme280, address: 0x76}\n")
    assert cli_main(["scan", "-c", str(cfg)]) == 0
    assert "devices:" not in capsys.readouterr().out  # the only chip is configured


def test_installed_config_is_the_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """Without -c, scan reads the installed config when there is one (readable)."""
    import gateway.cli

    cfg = tmp_path / "config.yaml"
    cfg.write_text("gateway: {id: s, simulate: true}\n"
                   "devices:\n  - {name: air, driver: bme280, address: 0x76}\n")
    monkeypatch.setattr(gateway.cli, "DEFAULT_CONFIG", str(cfg))
    assert cli_main(["scan"]) == 0
    assert "0x76  bme280 (id 0x60 at register 0xd0)  <- configured: air (bme280)" in \
        capsys.readouterr().out
