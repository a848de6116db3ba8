"""Every command in README.md and docs/*.md runs here, or is listed with why it cannot.

The ```sh blocks are extracted; each command line must match exactly one entry of
RUNS_HERE (run, against the simulator, and must succeed) or NOT_HERE (the reason it
cannot run in CI). A documented command in neither fails the test, so a new or changed
command is either run or explained. Sample outputs marked `<!-- sample-output: ... -->`
are compared with a real run.
"""

from __future__ import annotations

import re
import shlex
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from tests.support import REPO, GatewayProcess, Mosquitto

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"^(\s*)```(\w*)\s*$")

#: Commands that cannot run in CI, each with the reason (regex on the command, no comment).
NOT_HERE: list[tuple[str, str]] = [
    (r"make run", "interactive until Ctrl-C; tests/test_watch.py runs tools/demo.py (what it "
                  "runs) in a pseudo-terminal, and the live view sample is checked below"),
    (r"make test", "this suite is what it runs; .ci/run runs it as an unprivileged user"),
    (r"\.venv/bin/pytest .*", "make test runs every test file; pytest inside pytest would recurse"),
    (r"\.venv/bin/python tools/gen_config_reference\.py",
     "rewrites docs/config-reference.md; tests/test_config_reference.py fails when it is stale"),
    (r"sudo apt-get install .*", "installs OS packages; .ci/run (as root) installs what CI needs"),
    (r"sudo raspi-config .*", "Raspberry Pi OS only"),
    (r"git clone URL-OF-THIS-REPOSITORY .*", "the URL is wherever the project was obtained from"),
    (r"sudo make install", "installs a system service on this machine; tests/test_install.py "
                           "runs the same installer into a temporary root"),
    (r"sudoedit .*", "interactive editor"),
    (r"sudo systemctl .*|systemctl .*", "needs the installed service under systemd (PID 1); "
                                        "tests/test_systemd_unit.py checks the unit offline"),
    (r"journalctl .*", "needs the installed service's journal; tests/test_logs.py checks the "
                       "<N> priority prefixes"),
    (r"sudo install -m 0640 .*", "writes a secret into /etc on this machine"),
    (r"sudo edge-gateway .*|edge-gateway scan --bus 1|edge-gateway watch --broker localhost",
     "needs the installed service (config in /etc, I2C hardware, its broker); the same "
     "commands run against the simulator above"),
    (r"python3 -m venv /tmp/tfvenv .*|/tmp/tfvenv/bin/python tools/make_model\.py.*",
     "downloads TensorFlow (1.6 GB) to retrain the shipped models"),
    (r"sudo /opt/edge-gateway/venv/bin/pip install .*",
     "installs an extra into the service's venv of a Pi; tests/test_markers.py evaluates what "
     "each extra selects per platform"),
    (r"python3 -m venv --system-site-packages \.venv",
     "32-bit Raspberry Pi OS only (Debian's numpy); here .venv exists already"),
    (r"# .*", "a comment line inside a block (e.g. the content of a drop-in)"),
    (r"mosquitto_pub -h 127\.0\.0\.1 -t gateway/demo/.*",
     "needs the demo's broker on 1883; tests/test_control.py runs each of these against the "
     "demo config on a test broker and checks what they switched"),
    (r"mosquitto_sub -h 127\.0\.0\.1 .*", "watches the demo's broker until -W runs out; "
                                          "tests/test_control.py reads the same topics"),
    (r"\.venv/bin/python benchmarks/soak\.py .*", "a 30-minute soak, not part of make test; "
     "tests/test_spool_faults.py and tests/test_broker_recovery.py check the same faults"),
]


def run_ok(argv: list[str], timeout: float = 120) -> str:
    out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=REPO)
    assert out.returncode == 0, f"{argv}: exit {out.returncode}\n{out.stdout}\n{out.stderr}"
    return out.stdout


def venv_command(cmd: str) -> list[str]:
    """`.venv/bin/edge-gateway ARGS` / `.venv/bin/python ARGS` as this interpreter runs them
    (under `make test` it is the venv's)."""
    argv = shlex.split(cmd)
    if argv[0] == ".venv/bin/edge-gateway":
        return [sys.executable, "-m", "gateway", *argv[1:]]
    assert argv[0] == ".venv/bin/python"
    return [sys.executable, *argv[1:]]


def serve_until_ctrl_c(cmd: str) -> None:
    """A simulator that runs until Ctrl-C: it prints its pty, then stops cleanly on SIGINT."""
    proc = subprocess.Popen(venv_command(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, cwd=REPO)
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline(), proc.stdout.readline()]
        assert lines[0].startswith("gps: pty /dev/pts/"), lines
        assert lines[1].startswith("gps: symlink "), lines
        assert Path(lines[1].split()[-1]).exists()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


#: Commands run here (regex on the command -> how).
RUNS_HERE: list[tuple[str, Callable[[str], object]]] = [
    (r"\.venv/bin/edge-gateway (--help|test -c config/simulator\.yaml|check -c config/simulator\.yaml"
     r"|scan --simulate)", lambda cmd: run_ok(venv_command(cmd))),
    (r"\.venv/bin/python -m hardware_sim serial --device gps", serve_until_ctrl_c),
]


def sh_commands() -> Iterator[tuple[str, int, str]]:
    """(file, line, command) for every command line in a ```sh block, comments removed."""
    for doc in DOCS:
        inside = False
        for number, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1):
            m = FENCE.match(line)
            if m:
                inside = not inside and m.group(2) == "sh"
                continue
            if not inside or not line.strip():
                continue
            text = line.strip()
            if not text.startswith("#"):
                text = re.split(r"\s+#\s", text, maxsplit=1)[0].strip()
            yield doc.name, number, text


def matches(patterns: list[str], cmd: str) -> list[str]:
    return [p for p in patterns if re.fullmatch(p, cmd)]


def test_every_documented_command_is_run_or_explained() -> None:
    found = list(sh_commands())
    assert len(found) >= 20  # the extraction works (README + docs)
    unknown = []
    for file, line, cmd in found:
        runs = matches([p for p, _ in RUNS_HERE], cmd)
        skips = matches([p for p, _ in NOT_HERE], cmd)
        if len(runs) + len(skips) != 1:
            unknown.append(f"{file}:{line}: {cmd!r} (runs: {runs}, not here: {skips})")
    assert not unknown, "add to RUNS_HERE or NOT_HERE (with the reason):\n" + "\n".join(unknown)


@pytest.mark.parametrize("cmd", sorted({c for _, _, c in sh_commands()
                                        if matches([p for p, _ in RUNS_HERE], c)}))
def test_documented_command_runs(cmd: str) -> None:
    (how,) = [run for p, run in RUNS_HERE if re.fullmatch(p, cmd)]
    how(cmd)


def test_every_reason_is_still_used() -> None:
    """An allowlist entry no documented command needs any more is stale."""
    cmds = [c for _, _, c in sh_commands()]
    for pattern, reason in [*NOT_HERE, *((p, "") for p, _ in RUNS_HERE)]:
        assert any(re.fullmatch(pattern, c) for c in cmds), f"unused: {pattern} ({reason})"


# -- sample outputs ------------------------------------------------------------------------


def samples() -> Iterator[tuple[str, str, list[str]]]:
    """(file, marker text, block lines) for every block after a sample-output marker."""
    for doc in DOCS:
        lines = doc.read_text(encoding="utf-8").splitlines()
        for i, line in enumerate(lines):
            m = re.match(r"<!-- sample-output: (.*) -->", line.strip())
            if not m:
                continue
            assert FENCE.match(lines[i + 1]), f"{doc.name}:{i + 2}: a code block must follow"
            end = next(j for j in range(i + 2, len(lines)) if FENCE.match(lines[j]))
            yield doc.name, m.group(1), lines[i + 2:end]


def test_scan_sample_matches_a_scan_of_those_chips() -> None:
    """docs/hardware.md's scan of real hardware: the same chips on a simulated bus give the
    same listing and snippet (the sample names its chips in its marker)."""
    from gateway.commands.scan import report, scan_bus
    from hardware_sim.i2c import SimBus, SimClock, make_chip

    (marker, block), = [(m, b) for f, m, b in samples() if m.startswith("scan of ")]
    chips = re.findall(r"(\w+)@0x([0-9a-f]{2})", marker)
    bus = SimBus(1)
    for driver, address in chips:
        bus.attach(make_chip(driver, int(address, 16), None, SimClock(), seed=driver))
    assert block[0] == "$ edge-gateway scan --bus 1"
    assert report(1, "/dev/i2c-1", scan_bus(bus), {}).splitlines() == block[1:]


def test_command_samples_match_a_real_run() -> None:
    """Blocks of `$ command` + its output: the command is run, the output must be the same."""
    checked = 0
    for file, marker, block in samples():
        if not block[0].startswith("$ ") or not marker.startswith("run"):
            continue
        argv = shlex.split(block[0][2:])
        assert argv[0] == "edge-gateway", block[0]
        out = subprocess.run([sys.executable, "-m", "gateway", *argv[1:]], capture_output=True,
                             text=True, timeout=120, cwd=REPO)
        assert (out.stdout + out.stderr).splitlines() == block[1:], f"{file}: {block[0]}"
        checked += 1
    assert checked >= 1


def test_live_view_sample_matches_the_demo(tmp_path: Path, broker: Mosquitto) -> None:
    """README's live view: the same header, columns, devices and value keys as a real
    `watch --once` of config/simulator.yaml (numbers differ from run to run)."""
    (sample,) = [b for f, m, b in samples() if f == "README.md" and "watch of" in m]
    data = yaml.safe_load((REPO / "config/simulator.yaml").read_text())
    data["mqtt"]["port"] = broker.port
    data["buffer"]["path"] = str(tmp_path / "spool.db")
    cfg = tmp_path / "demo.yaml"
    cfg.write_text(yaml.safe_dump(data, sort_keys=False))
    gw = GatewayProcess(cfg, tmp_path / "gw.log").start()
    try:
        real = run_ok([sys.executable, "-m", "gateway", "watch", "-c", str(cfg), "--once",
                       "--timeout", "90"], timeout=180).splitlines()
    finally:
        assert gw.stop() == 0, gw.output()

    def shape(lines: list[str]) -> tuple[str, list[str], dict[str, tuple[str, list[str]]]]:
        head = re.sub(r"\d+", "N", lines[0])
        rows = {}
        for line in lines[3:]:
            name, state, _seq, _age, *values = line.split()
            rows[name] = (state, [v.split("=", 1)[0] for v in values])
        return head, lines[2].split(), rows

    assert shape(sample) == shape(real), "\n".join(real)


def test_the_sample_configs_in_the_docs_are_valid() -> None:
    """`check` on the shipped configs (the docs start from them)."""
    for name in ("config/simulator.yaml", "config/example-pi.yaml"):
        out = subprocess.run([sys.executable, "-m", "gateway", "check", "-c", name],
                             capture_output=True, text=True, timeout=120, cwd=REPO)
        assert out.returncode == 0, out.stderr


