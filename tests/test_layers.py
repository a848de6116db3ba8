"""The layering holds at run time too: any module can be imported first, the simulator stays out.

`lint-imports` (in `make test`) checks the contract statically; these check what it
cannot see: that no import order trips over a package `__init__` (a module imported
first in a fresh interpreter), and that a gateway which does not simulate never loads
`hardware_sim`, even for a config with `sim:` blocks.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# Modules whose import pulls in a package from below or above: each first, alone.
FIRST_IMPORTS = [
    "gateway.catalog", "gateway.drivers.bme280", "gateway.protocols.modbus",
    "gateway.config", "gateway.config.model", "gateway.config.checks", "gateway.drivers",
    "gateway.readers.serial", "gateway.readers.factory", "gateway.service.reload",
    "gateway.service.watchdog", "gateway.daemon", "gateway.commands.check",
    "hardware_sim.i2c", "hardware_sim.world",
]


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=60, check=False)


@pytest.mark.parametrize("module", FIRST_IMPORTS)
def test_module_imports_first_in_a_fresh_interpreter(module: str) -> None:
    result = run_python(f"import {module}")
    assert result.returncode == 0, result.stderr


def test_a_gateway_that_does_not_simulate_never_loads_the_simulator(tmp_path: Path) -> None:
    cfg = tmp_path / "gw.yaml"
    cfg.write_text(textwrap.dedent(f"""\
        gateway: {{id: plain}}
        buffer: {{path: {tmp_path / "spool.db"}}}
        devices:
          - {{name: air, driver: bme280, sim: {{values: {{temperature_c: 20}}}}}}
        """))
    result = run_python(textwrap.dedent(f"""\
        import sys
        from gateway.config import load_config
        from gateway.daemon import Gateway
        from gateway.service.checks import deep_checks
        cfg = load_config({str(cfg)!r})
        deep_checks(cfg)
        Gateway(cfg).outbox.spool.close()
        loaded = sorted(m for m in sys.modules if m.split(".")[0] == "hardware_sim")
        assert not loaded, loaded
        """))
    assert result.returncode == 0, result.stderr


def test_the_commands_plug_the_simulator_check_in(tmp_path: Path) -> None:
    """`check` reports a bad `sim:` block with its line, without the config importing the simulator."""
    cfg = tmp_path / "gw.yaml"
    cfg.write_text("gateway: {id: t, simulate: true}\n"
                   "devices:\n"
                   "  - {name: a, driver: tmp102, sim: {faults: {absent_fo: 2s}}}\n")
    result = subprocess.run([sys.executable, "-m", "gateway", "check", "-c", str(cfg)], cwd=REPO,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert f"{cfg}:3: devices.0.sim" in result.stderr and "absent_fo" in result.stderr


def test_import_contract_is_kept() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint), "--no-cache"], cwd=REPO, capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stdout[-3000:]
