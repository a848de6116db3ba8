"""Bad configurations get precise one-line errors: `FILE:LINE: dotted.path: what is wrong`.

Each case is a config text, the dotted path, the line and a fragment of the
message that must appear. A few are run through the real CLI as a subprocess
(exit 2, no traceback).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.config import ConfigError, load_config, parse_config
from gateway.config.checks import run_checks
from tests.support import REPO

GOOD = """\
gateway:
  id: gh-1
mqtt:
  host: 127.0.0.1
devices:
  - name: air
    driver: bme280
    address: 0x76
"""


@dataclass(frozen=True)
class Bad:
    id: str
    text: str
    path: str
    line: int
    fragment: str


CASES = [
    Bad("empty", "", "(top)", 1, "the file is empty"),
    Bad("comments-only", "# nothing here\n", "(top)", 1, "the file is empty"),
    Bad("yaml-syntax", "gateway:\n  id: gh\nmqtt:\n  host: [127.0.0.1\n  port: 1883\n",
        "(yaml)", 4, "'[' opened here is never closed"),
    Bad("yaml-bad-indent", "gateway:\n  id: gh\n mqtt: {}\n", "(yaml)", 3,
        "the indentation of this line does not line up with the lines above"),
    Bad("not-a-mapping", "- gateway\n- mqtt\n", "(top)", 1, "expected a YAML mapping"),
    Bad("scalar-document", "hello\n", "(top)", 1, "expected a YAML mapping"),
    Bad("two-documents", "gateway: {id: a}\n---\ngateway: {id: b}\n", "(yaml)", 2,
        "a second YAML document starts here"),
    Bad("missing-gateway", "mqtt: {host: h}\n", "gateway", 1, "required key is missing"),
    Bad("unknown-top-level", GOOD + "gatway: {}\n", "gatway", 9, "unknown key; did you mean 'gateway'"),
    Bad("unknown-mqtt-key", GOOD.replace("  host: 127.0.0.1\n", "  host: 127.0.0.1\n  prot: 1883\n"),
        "mqtt.prot", 5, "did you mean 'port'"),
    Bad("port-type", GOOD.replace("  host: 127.0.0.1\n", "  host: 127.0.0.1\n  port: eighteen\n"),
        "mqtt.port", 5, "valid integer"),
    Bad("port-range", GOOD.replace("  host: 127.0.0.1\n", "  host: 127.0.0.1\n  port: 70000\n"),
        "mqtt.port", 5, "less than or equal to 65535"),
    Bad("port-zero", GOOD.replace("  host: 127.0.0.1\n", "  host: 127.0.0.1\n  port: 0\n"),
        "mqtt.port", 5, "greater than or equal to 1"),
    Bad("qos", GOOD.replace("  host: 127.0.0.1\n", "  host: 127.0.0.1\n  qos: 3\n"),
        "mqtt.qos", 5, "must be one of 0, 1 or 2"),
    Bad("simulate-type", "gateway:\n  id: gh\n  simulate: maybe\n", "gateway.simulate", 3,
        "valid boolean"),
    Bad("topic-prefix-wildcard",
        GOOD.replace("  host: 127.0.0.1\n", "  host: 127.0.0.1\n  topic_prefix: site/+/gw\n"),
        "mqtt.topic_prefix", 5, "wildcards"),
    Bad("topic-prefix-slash",
        GOOD.replace("  host: 127.0.0.1\n", "  host: 127.0.0.1\n  topic_prefix: /site\n"),
        "mqtt.topic_prefix", 5, "start or end with '/'"),
    Bad("duration-garbage", GOOD + "    interval: soon\n", "devices.0.interval", 9, "not a duration"),
    Bad("duration-unit", GOOD + "    interval: 5 parsecs\n", "devices.0.interval", 9, "not a duration"),
    Bad("duration-below-1ms", GOOD + "    interval: 0.5ms\n", "devices.0.interval", 9,
        "greater than or equal to 0.001"),
    Bad("duration-zero", GOOD + "    interval: 0\n", "devices.0.interval", 9,
        "greater than or equal to 0.001"),
    Bad("duration-negative", "gateway:\n  id: gh\n  health_interval: -5\n",
        "gateway.health_interval", 3, "greater than or equal to 0.001"),
    Bad("duplicate-device-name",
        GOOD + "  - name: air\n    driver: tmp102\n    address: 0x48\n",
        "devices.1.name", 9, "duplicate device name 'air' (also on line 6)"),
    Bad("duplicate-yaml-key", "gateway:\n  id: gh\nmqtt:\n  host: a\n  host: b\n",
        "mqtt.host", 5, "duplicate key (first given on line 4)"),
    Bad("duplicate-top-section", "gateway:\n  id: a\nmqtt: {}\ngateway:\n  id: b\n",
        "gateway", 4, "duplicate key (first given on line 1)"),
    Bad("name-uppercase", GOOD.replace("name: air", "name: Air"), "devices.0.name", 6, "Air"),
    Bad("name-slash", GOOD.replace("name: air", "name: air/1"), "devices.0.name", 6, "air/1"),
    Bad("name-plus", GOOD.replace("name: air", "name: 'air+'"), "devices.0.name", 6, "air+"),
    Bad("name-hash", GOOD.replace("name: air", "name: 'air#'"), "devices.0.name", 6, "air#"),
    Bad("name-space", GOOD.replace("name: air", "name: air one"), "devices.0.name", 6, "air one"),
    Bad("gateway-id-bad", "gateway:\n  id: My Gateway\n", "gateway.id", 2, "My Gateway"),
    Bad("reserved-name-status", GOOD.replace("name: air", "name: status"), "devices.0.name", 6,
        "reserved"),
    Bad("reserved-name-health", GOOD.replace("name: air", "name: health"), "devices.0.name", 6,
        "reserved"),
    Bad("unknown-driver", GOOD.replace("driver: bme280", "driver: bme208"), "devices.0.driver", 7,
        "did you mean 'bme280'"),
    Bad("missing-driver", GOOD.replace("    driver: bme280\n", ""), "devices.0.driver", 6,
        "required key is missing"),
    Bad("i2c-address-range", GOOD.replace("address: 0x76", "address: 0x80"), "devices.0.address", 8,
        "0x80 is not a usable 7-bit I2C address"),
    Bad("i2c-address-text", GOOD.replace("address: 0x76", "address: seventy"), "devices.0.address", 8,
        "not an integer"),
    Bad("duplicate-bus-address",
        GOOD + "  - name: air2\n    driver: bme280\n    address: 0x76\n",
        "devices.1.address", 11, "bus 1 address 0x76 is already used by device 'air'"),
    Bad("unknown-device-key", GOOD + "    intreval: 5s\n", "devices.0.intreval", 9,
        "did you mean 'interval'"),
    Bad("device-not-mapping", GOOD + "  - just-a-name\n", "devices.1", 9, "expected a mapping"),
    Bad("devices-not-list", "gateway: {id: gh}\ndevices:\n  air: {driver: bme280}\n", "devices", 2,
        "valid list"),
    Bad("bad-deadband", GOOD + "    publish: {on_change: true, deadband: lots}\n",
        "devices.0.publish.deadband", 9, 'relative deadband ends with "%"'),
    Bad("metrics-listen", GOOD + "metrics:\n  listen: 9108\n", "metrics.listen", 10, "host:port"),
    Bad("when-full", GOOD + "buffer:\n  when_full: explode\n", "buffer.when_full", 10,
        "must be one of 'drop_oldest' or 'reject_new'"),
]


def problems_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "gw.yaml")
    return [str(p) for p in info.value.problems]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_config_reports_path_line_and_reason(case: Bad) -> None:
    lines = problems_of(case.text)
    prefix = f"gw.yaml:{case.line}: {case.path}: "
    hits = [line for line in lines if line.startswith(prefix)]
    assert hits, f"no problem at {prefix!r}; got {lines}"
    assert any(case.fragment in h for h in hits), lines


def test_the_good_config_is_good() -> None:
    cfg = parse_config(GOOD)
    assert cfg.topic_prefix == "gateway/gh-1" and cfg.devices[0].name == "air"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("250ms", 0.25), ("5s", 5.0), ("1m", 60.0), ("1ms", 0.001), ("2h", 7200.0), ("0.5", 0.5),
     ("3", 3.0)],
)
def test_duration_forms_are_accepted(text: str, seconds: float) -> None:
    cfg = parse_config(GOOD + f"    interval: {text}\n")
    assert cfg.devices[0].interval == pytest.approx(seconds)


def test_several_problems_at_once_sorted_by_line() -> None:
    text = """\
gateway:
  id: Bad Id
mqtt:
  port: 99999
  qos: 5
devices:
  - name: a
    driver: nope
  - name: b
    driver: tmp102
    address: 0x48
    interval: never
colour: blue
"""
    lines = problems_of(text)
    assert [line.split(":")[1] for line in lines] == ["2", "4", "5", "8", "12", "13"], lines
    assert lines[-1] == "gw.yaml:13: colour: unknown key (allowed here: buffer, devices, gateway, " \
        "homeassistant, http, inference, metrics, mqtt, outputs)"


def test_missing_file_and_binary_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.yaml")
    assert str(info.value.problems[0]) == f"{tmp_path / 'nope.yaml'}:0: (file): no such file"
    binary = tmp_path / "model.tflite"
    binary.write_bytes(b"TFL3\x00\x01\x02\xff\xfe\x80" * 20)
    with pytest.raises(ConfigError) as info:
        load_config(binary)
    assert str(info.value.problems[0]) == (
        f"{binary}:1: (file): not a text file (invalid UTF-8); expected YAML")


def test_password_file_without_username_is_a_deep_check(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("hunter2\n")
    secret.chmod(0o600)
    cfg = parse_config(f"gateway: {{id: g}}\nmqtt:\n  password_file: {secret}\n", "gw.yaml")
    problems = [str(p) for p in run_checks(cfg)]
    assert any("mqtt.password_file" in p and "username" in p for p in problems), problems
    assert not any("hunter2" in p for p in problems)


def run_check(path: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "gateway", "check", "-c", str(path)],
                          capture_output=True, text=True, timeout=120, cwd=REPO, env=env)


@pytest.mark.parametrize("case", [c for c in CASES if c.id in {
    "yaml-syntax", "unknown-mqtt-key", "duplicate-bus-address", "name-slash", "unknown-driver"}],
    ids=lambda c: c.id)
def test_cli_check_exit_2_one_line_per_problem(tmp_path: Path, case: Bad) -> None:
    path = tmp_path / "gw.yaml"
    path.write_text(case.text)
    out = run_check(path)
    assert out.returncode == 2
    assert out.stdout == ""
    assert "Traceback" not in out.stderr
    lines = out.stderr.splitlines()
    assert any(line.startswith(f"{path}:{case.line}: {case.path}: ") and case.fragment in line
               for line in lines), out.stderr


def test_cli_check_missing_file_and_good_file(tmp_path: Path) -> None:
    out = run_check(tmp_path / "absent.yaml")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip() == f"{tmp_path / 'absent.yaml'}:0: (file): no such file"
    good = tmp_path / "good.yaml"
    good.write_text(GOOD)
    out = run_check(good)
    assert out.returncode == 0, out.stderr
    # Warnings depend on this machine (no /dev/i2c-1 here; /var/lib not writable for a user).
    warnings = out.stderr.splitlines()
    assert all(": warning: " in w for w in warnings), out.stderr
    more = {0: "", 1: "; 1 warning above"}.get(len(warnings), f"; {len(warnings)} warnings above")
    assert out.stdout.strip() == f"{good}: ok (1 device{more})"
