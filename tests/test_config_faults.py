"""Every kind of broken config file: `check` and `run` exit 2 with one `FILE:LINE: path:
problem` line each (never a traceback), and SIGHUP keeps the running config and the daemon.

Also: YAML syntax errors in plain words at the line to look at, and the broker password
never written into the config.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.config import ConfigError, load_config, parse_config
from gateway.config.checks import run_checks
from tests.support import REPO, GatewayProcess, Mosquitto, Subscriber, sim_header, write_config
from tests.test_config import GOOD


@dataclass(frozen=True)
class Broken:
    id: str
    data: bytes
    line: int
    path: str
    fragment: str


def b(text: str) -> bytes:
    return text.encode()


#: One of each kind of error pyyaml (or the bytes under it) can make.
BROKEN = [
    Broken("equals-alone", b(GOOD.replace("name: air", "name: =")), 6, "devices.0.name",
           "lowercase letters"),
    Broken("merge-scalar", b(GOOD.replace("  id: gh-1\n", "  id: gh-1\n  <<: 1\n")), 3,
           "gateway.<<", "'<<' merges a mapping"),
    Broken("merge-alias-to-scalar", b("x: &n 5\n" + GOOD.replace("  id: gh-1\n",
                                                                   "  id: gh-1\n  <<: *n\n")),
           4, "gateway.<<", "not the value '5'"),
    Broken("merge-list-with-scalar",
           b("x: &m {id: a}\n" + GOOD.replace("  id: gh-1\n", "  <<: [*m, 3]\n")), 3,
           "gateway.<<", "not the value '3'"),
    Broken("undefined-alias", b(GOOD.replace("0x76", "*addr")), 8, "(yaml)",
           "'*addr' refers to an anchor '&addr' that is not defined"),
    Broken("duplicate-anchor", b(GOOD.replace("gh-1", "&a gh-1").replace("0x76", "&a 0x76")), 8,
           "(yaml)", "anchor '&a' is already defined on line 2"),
    Broken("recursive-alias", b(GOOD + "    sim: &s {values: [*s]}\n"), 9,
           "devices.0.sim.values.0",
           "an alias refers to a mapping or list that contains it"),
    Broken("alias-bomb", b(GOOD + "    sim:\n      a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"      {c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
        for p, c in zip("abcdef", "bcdefg", strict=True))), 15, "devices.0.sim.f",
           "more than 200000 values once aliases are expanded"),
    Broken("nested-too-deep", b(GOOD + "    sim: " + "[" * 1000 + "]" * 1000 + "\n"), 9,
           "(yaml)", "nested more than 64 levels deep"),
    Broken("duplicate-key", b(GOOD.replace("  host: 127.0.0.1\n",
                                           "  host: 127.0.0.1\n  host: 10.0.0.1\n")), 5,
           "mqtt.host", "duplicate key (first given on line 4)"),
    Broken("unknown-tag", b(GOOD.replace("gh-1", "!!python/object gh-1")), 2, "gateway.id",
           "YAML tag '!!python/object' is not supported"),
    Broken("bad-date", b(GOOD.replace("gh-1", "2026-13-45")), 2, "gateway.id",
           "looks like a date but is not one"),
    Broken("tab-indent", b(GOOD.replace("  host:", "\thost:")), 4, "(yaml)",
           "tab character used for indentation: YAML needs spaces"),
    Broken("bad-indent", b(GOOD.replace("    driver:", "   driver:")), 7, "(yaml)",
           "does not line up with the lines above"),
    Broken("indented-deeper", b(GOOD.replace("    address:", "      address:")), 8, "(yaml)",
           "does not line up with the lines above (it is deeper than line 7, which has a value"),
    Broken("wrong-closing-bracket", b(GOOD + "    sim: {values: [1, 2}\n    interval: 1s\n"),
           9, "(yaml)", "'[' opened here is never closed"),
    Broken("missing-comma", b(GOOD + "    sim: {values: 1 x: 2}\n"), 9,
           "(yaml)", "expected ',' or '}' here, inside the '{' opened on line 9"),
    Broken("never-closed-bracket", b(GOOD.replace("  host: 127.0.0.1", "  host: [127.0.0.1")), 4,
           "(yaml)", "'[' opened here is never closed"),
    Broken("never-closed-brace", b(GOOD.replace("gateway:\n  id: gh-1", "gateway: {id: gh-1")), 1,
           "(yaml)", "'{' opened here is never closed"),
    Broken("never-closed-quote", b(GOOD.replace("gh-1", "'gh-1")), 2, "(yaml)",
           "the ' quote opened here is never closed"),
    Broken("second-colon", b(GOOD.replace("host: 127.0.0.1", "host: a: b")), 4, "(yaml)",
           "a second ':' on this line"),
    Broken("no-colon", b(GOOD.replace("driver: bme280", "driver bme280")), 7, "(yaml)",
           "this line has no ':'"),
    Broken("second-document", b(GOOD + "---\nfoo: 1\n"), 9, "(yaml)",
           "a second YAML document starts here"),
    Broken("control-character", b(GOOD.replace("gh-1", "gh\x07-1")), 2, "(file)",
           "control character U+0007 at column 9"),
    Broken("nul-character", b(GOOD.replace("bme280", "bme\x00280")), 7, "(file)",
           "control character U+0000"),
    Broken("bom-in-the-middle", b(GOOD.replace("mqtt:", "\ufeffmqtt:")), 3, "(file)",
           "byte order mark"),
    Broken("latin-1", GOOD.replace("gh-1", "gr\xfcn").encode("latin-1"), 2, "(file)",
           "byte 0xfc at column 9 is not UTF-8"),
    Broken("utf-16", GOOD.encode("utf-16"), 1, "(file)", "UTF-16"),
    Broken("empty", b"", 1, "(top)", "the file is empty"),
    Broken("top-level-list", b"- gateway\n- mqtt\n", 1, "(top)", "expected a YAML mapping"),
    Broken("password-in-config", b(GOOD.replace("  host: 127.0.0.1\n",
                                                "  host: 127.0.0.1\n  password: hunter2\n")), 5,
           "mqtt.password", "password_file: /etc/edge-gateway/mqtt-password"),
    Broken("password-env-not-a-name", b(GOOD.replace("  host: 127.0.0.1\n",
                                                     "  host: 127.0.0.1\n  username: gw\n"
                                                     "  password_env: hunter 2!\n")), 6,
           "mqtt.password_env", "not the name of an environment variable"),
]


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return [str(p) for p in info.value.problems]


@pytest.mark.parametrize("case", BROKEN, ids=[c.id for c in BROKEN])
def test_each_kind_of_broken_file_gets_its_line(tmp_path: Path, case: Broken) -> None:
    path = tmp_path / "gw.yaml"
    path.write_bytes(case.data)
    lines = problems(path)
    want = f"{path}:{case.line}: {case.path}: "
    assert any(p.startswith(want) and case.fragment in p for p in lines), (want, lines)
    assert all("hunter" not in p for p in lines), lines  # a password is never echoed


def test_a_byte_order_mark_at_the_start_is_fine(tmp_path: Path) -> None:
    path = write_config(tmp_path / "gw.yaml", "\ufeff" + GOOD)
    assert load_config(path).gateway.id == "gh-1"


def test_a_directory_and_an_unreadable_file(tmp_path: Path) -> None:
    assert problems(tmp_path) == [f"{tmp_path}:0: (file): is a directory, not a config file"]


def test_merge_keys_work_and_the_keys_given_win() -> None:
    cfg = parse_config(
        "gateway: {id: g}\n"
        "devices:\n"
        "  - &first {name: a, driver: tmp102, address: 0x48, interval: 5s, bus: 2}\n"
        "  - <<: *first\n"
        "    name: b\n"
        "    address: 0x49\n", "gw.yaml")
    a, b_ = cfg.devices
    assert (b_.name, b_.address, b_.interval, b_.bus) == ("b", 0x49, 5.0, 2)  # type: ignore[attr-defined]
    assert a.name == "a"


def test_a_value_from_a_merge_is_reported_where_it_is_written() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config("gateway: {id: g}\n"
                     "devices:\n"
                     "  - &first {name: a, driver: tmp102, address: 0x48, interval: soon}\n"
                     "  - <<: *first\n"
                     "    name: b\n"
                     "    address: 0x49\n", "gw.yaml")
    assert [str(p) for p in info.value.problems] == [
        "gw.yaml:3: devices.0.interval: not a duration: 'soon' (use seconds as a number, or "
        "\"250ms\", \"5s\", \"1m\", \"2h\")",
        "gw.yaml:3: devices.1.interval: not a duration: 'soon' (use seconds as a number, or "
        "\"250ms\", \"5s\", \"1m\", \"2h\")",
    ]


# ------------------------------------------------------------------ the broker password


def with_password_env(value: str, username: bool = True) -> str:
    user = "  username: gw\n" if username else ""
    return GOOD.replace("  host: 127.0.0.1\n", f"  host: 127.0.0.1\n{user}  password_env: {value}\n")


def test_password_env_naming_a_variable_that_is_not_set_is_caught_with_its_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("hunter2", raising=False)
    path = write_config(tmp_path / "gw.yaml", with_password_env("hunter2"))
    found = [str(p) for p in run_checks(load_config(path))]
    assert len(found) == 1 and found[0].startswith(f"{path}:6: mqtt.password_env: "), found
    assert "is not set" in found[0] and "hunter2" not in found[0]
    monkeypatch.setenv("GW_PASSWORD", "s3cret")
    assert run_checks(parse_config(with_password_env("GW_PASSWORD"), "gw.yaml")) == []


def test_password_without_username(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GW_PASSWORD", "s3cret")
    cfg = parse_config(with_password_env("GW_PASSWORD", username=False), "gw.yaml")
    assert [p.message for p in run_checks(cfg)] == ["a password needs mqtt.username too"]


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = dict(os.environ, PYTHONPATH=str(REPO), **(env or {}))
    return subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True,
                          text=True, timeout=120, cwd=REPO, env=full)


def test_check_and_run_refuse_password_env_that_is_not_set(tmp_path: Path) -> None:
    path = write_config(tmp_path / "gw.yaml", with_password_env("hunter2")
                        + f"buffer: {{path: {tmp_path}/spool.db}}\n")
    env = {k: v for k, v in os.environ.items() if k != "hunter2"}
    for command in ("check", "run"):
        out = subprocess.run([sys.executable, "-m", "gateway", command, "-c", str(path)],
                             capture_output=True, text=True, timeout=120, cwd=REPO,
                             env=dict(env, PYTHONPATH=str(REPO)))
        assert out.returncode == 2, (command, out.stderr)
        assert out.stderr.startswith(f"{path}:6: mqtt.password_env: "), (command, out.stderr)
        assert "Traceback" not in out.stderr and "hunter2" not in out.stderr


# ------------------------------------------------------------------ run, then SIGHUP

RUN_CASES = [c for c in BROKEN if c.id in {
    "equals-alone", "merge-scalar", "tab-indent", "control-character", "latin-1",
    "never-closed-bracket", "nested-too-deep"}]


@pytest.mark.parametrize("case", RUN_CASES, ids=[c.id for c in RUN_CASES])
def test_run_exits_2_with_the_line(tmp_path: Path, case: Broken) -> None:
    path = tmp_path / "gw.yaml"
    path.write_bytes(case.data)
    out = cli("run", "-c", str(path))
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    lines = out.stderr.splitlines()
    assert all(re.match(rf"{re.escape(str(path))}:\d+: \S+: .+", line) for line in lines), lines
    assert any(line.startswith(f"{path}:{case.line}: {case.path}: ") for line in lines), lines


def sim_config(tmp_path: Path, port: int, value: float) -> str:
    return sim_header("hup", port, tmp_path) + f"""\
devices:
  - name: probe
    driver: tmp102
    address: 0x48
    interval: 100ms
    sim:
      values: {{temperature_c: {value}}}
"""


def test_sighup_with_each_kind_of_broken_file_keeps_the_daemon_and_its_config(
        tmp_path: Path, broker: Mosquitto) -> None:
    path = write_config(tmp_path / "gw.yaml", sim_config(tmp_path, broker.port, 11.5))
    sub = Subscriber(broker.port, "gateway/hup/probe").start()
    gw = GatewayProcess(path, tmp_path / "gw.log").start()
    kept = "still running on the previous configuration"
    try:
        assert sub.wait_for(lambda s: s.count("gateway/hup/probe") >= 3), gw.output()
        for i, case in enumerate(BROKEN, start=1):
            path.write_bytes(case.data)
            gw.signal(signal.SIGHUP)
            deadline = time.monotonic() + 30
            while gw.output().count(kept) < i:
                assert gw.proc is not None and gw.proc.poll() is None, (case.id, gw.output()[-3000:])
                assert time.monotonic() < deadline, (case.id, gw.output()[-3000:])
                time.sleep(0.1)
            assert f"reload: {path}:{case.line}: {case.path}: " in gw.output(), case.id
        # A directory where the file was, then the file back with a new value: applied.
        path.unlink()
        path.mkdir()
        gw.signal(signal.SIGHUP)
        while gw.output().count(kept) < len(BROKEN) + 1:
            assert gw.proc is not None and gw.proc.poll() is None, gw.output()[-3000:]
            time.sleep(0.1)
        n = sub.count("gateway/hup/probe")
        assert sub.wait_for(lambda s: s.count("gateway/hup/probe") >= n + 5), gw.output()
        assert {m.json()["temperature_c"] for m in sub.on("gateway/hup/probe")} == {11.5}
        path.rmdir()
        write_config(path, sim_config(tmp_path, broker.port, 22.5))
        gw.signal(signal.SIGHUP)
        assert sub.wait_for(lambda s: any(m.json()["temperature_c"] == 22.5
                                          for m in s.on("gateway/hup/probe"))), gw.output()
    finally:
        code = gw.stop()
        sub.stop()
    out = gw.output()
    assert code == 0, out[-3000:]
    assert "Traceback" not in out
    seqs = [m.json()["seq"] for m in sub.on("gateway/hup/probe")]
    assert seqs == list(range(1, len(seqs) + 1))
