"""What a sensors-only daemon loads: nothing it does not use (issue 20, memory).

`dataclasses` imports `inspect`, `ast` and `dis`: 0.8 MiB of RSS on a Pi Zero 2 W for
nothing the daemon uses (gateway/slots.py). The simulator's config, less its serial
devices, inference, outputs and Home Assistant (features whose modules may load
them), runs in a fresh interpreter as `edge-gateway run` builds it (plain models, the
config from the validating child) until every sensor has read, I2C and kernel
drivers alike.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
SERIAL = {"nmea", "lines", "modbus_rtu"}
#: Never in a sensors-only daemon.
UNUSED = ["dataclasses", "inspect", "ast", "dis", "pydantic", "numpy", "multiprocessing",
          "serial", "pymodbus", "asyncio"]

PROBE = textwrap.dedent("""\
    import json, sys, time
    from gateway.config.mode import use_plain_models
    use_plain_models()
    import gateway.cli
    from gateway.commands.run import Gateway
    from gateway.config.snapshot import load_validated
    gw = Gateway(load_validated(sys.argv[1]))
    gw.start()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (
                gw.health.devices and all(h.readings > 0 for h in gw.health.devices.values())):
            time.sleep(0.1)
        read = sorted(n for n, h in gw.health.devices.items() if h.readings > 0)
        print(json.dumps({"read": read, "loaded": [m for m in json.loads(sys.argv[2])
                                                   if m in sys.modules]}))
    finally:
        gw.request_stop()
        gw.shutdown()
    """)


def sensors_only(tmp_path: Path) -> tuple[Path, list[str]]:
    doc = yaml.safe_load((REPO / "config" / "simulator.yaml").read_text())
    for feature in ("inference", "outputs", "homeassistant"):
        doc.pop(feature, None)
    doc["devices"] = [d for d in doc["devices"] if d["driver"] not in SERIAL]
    doc["buffer"]["path"] = str(tmp_path / "spool.db")
    doc["mqtt"].update(host="127.0.0.1", port=1)  # nothing listens: readings stay spooled
    path = tmp_path / "sensors.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path, sorted(d["name"] for d in doc["devices"])


def test_a_sensors_only_daemon_loads_no_module_it_does_not_use(tmp_path: Path) -> None:
    cfg, names = sensors_only(tmp_path)
    assert len(names) >= 8, names  # I2C chips, 1-Wire, IIO, GPIO inputs, the Pi's own
    out = subprocess.run([sys.executable, "-c", PROBE, str(cfg), json.dumps(UNUSED)],
                         cwd=REPO, capture_output=True, text=True, timeout=180, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["read"] == names, out.stderr[-3000:]  # every sensor took a reading
    assert result["loaded"] == [], result["loaded"]
