"""A model is loaded in a child process everywhere outside the worker: a runtime that
crashes (SIGSEGV in Interpreter.__init__, as ai-edge-litert 2.3.0 did under
qemu-aarch64) or an install without the inference extra gives `check` and the
demo one clean line and exit 2, never a dead process or a traceback.

The broken runtimes are real Python packages put first on PYTHONPATH: a fake
`ai_edge_litert` whose Interpreter kills its own process with SIGSEGV, and a
`numpy` that is not installed.
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gateway.inference.probe import probe_model
from gateway.inference.worker import EXIT_MODEL, WorkerSettings, _run
from tests.support import REPO, write_config

MODEL = REPO / "models" / "shapes_int8.tflite"

CRASHING_RUNTIME = """
import os, signal

class Interpreter:
    def __init__(self, *args, **kwargs):
        os.kill(os.getpid(), signal.SIGSEGV)
"""


@pytest.fixture
def crashing_runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    pkg = tmp_path / "fakes" / "ai_edge_litert"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "interpreter.py").write_text(CRASHING_RUNTIME)
    monkeypatch.setenv("PYTHONPATH", str(pkg.parent))
    return pkg.parent


@pytest.fixture
def no_numpy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    fakes = tmp_path / "nonumpy"
    fakes.mkdir()
    (fakes / "numpy.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'numpy'\", name='numpy')\n")
    monkeypatch.setenv("PYTHONPATH", str(fakes))
    return fakes


def inference_config(tmp_path: Path, model: Path) -> Path:
    return write_config(tmp_path / "gw.yaml", f"""
gateway: {{id: probe, simulate: true}}
mqtt: {{host: 127.0.0.1, port: 1883}}
buffer: {{path: {tmp_path}/spool.db}}
inference:
  enabled: true
  name: cam
  model: {model}
  camera: sim
""")


def check(cfg: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", "check", "-c", str(cfg)],
                          capture_output=True, text=True, cwd=REPO, timeout=120)


def test_probe_loads_a_good_model_and_explains_a_bad_one(tmp_path: Path) -> None:
    assert probe_model(MODEL) is None
    bad = tmp_path / "broken.tflite"
    bad.write_bytes(b"\x00" * 300)
    why = probe_model(bad)
    assert why is not None and "not a usable TFLite model" in why and "\n" not in why
    assert "not an SSD detector" in (probe_model(MODEL, task="detection") or "")


def test_crashing_runtime_is_one_clean_line(crashing_runtime: Path) -> None:
    assert probe_model(MODEL) == "model could not be loaded: the runtime crashed (SIGSEGV)"


def test_check_survives_a_crashing_runtime(tmp_path: Path, crashing_runtime: Path) -> None:
    cfg = inference_config(tmp_path, MODEL)
    out = check(cfg)
    assert out.returncode == 2, out
    assert out.stderr.splitlines() == [
        f"{cfg}:8: inference.model: model could not be loaded: the runtime crashed (SIGSEGV)"
    ], out.stderr


def test_demo_survives_a_crashing_runtime(tmp_path: Path, crashing_runtime: Path) -> None:
    """`make run` validates the config first; with a crashing runtime it stops with the
    reason (exit 2) before starting a broker."""
    cfg = inference_config(tmp_path, MODEL)
    out = subprocess.run([sys.executable, "tools/demo.py", str(cfg), "--run-dir",
                          str(tmp_path / "run")], capture_output=True, text=True, cwd=REPO,
                         timeout=120)
    assert out.returncode == 2, out
    assert "the runtime crashed (SIGSEGV)" in out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "run" / "broker.log").exists()


def test_check_without_the_inference_extra_gives_the_pip_command(tmp_path: Path,
                                                                  no_numpy: Path) -> None:
    cfg = inference_config(tmp_path, MODEL)
    out = check(cfg)
    assert out.returncode == 2, out
    lines = out.stderr.splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith(f"{cfg}:8: inference.model: the inference extra is not "
                               "installed (no module numpy): ")
    assert "pip install 'edge-gateway[inference]'" in lines[0]
    assert "Traceback" not in out.stderr


def test_worker_without_the_extra_reports_one_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker's own imports fail as a message to the supervisor, not a traceback."""
    monkeypatch.setitem(sys.modules, "gateway.inference.model", None)  # import -> ImportError
    parent, child = multiprocessing.Pipe()
    try:
        assert _run(child, WorkerSettings(model=str(MODEL))) == EXIT_MODEL
        kind, where, text = parent.recv()
    finally:
        parent.close()
        child.close()
    assert (kind, where) == ("error", "model")
    assert text.startswith("the inference extra is not installed (no module ")
    assert "pip install 'edge-gateway[inference]'" in text


def test_probe_child_never_talks_to_systemd(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The child gets no NOTIFY_SOCKET: only the daemon's main process notifies."""
    spy = tmp_path / "spy"
    spy.mkdir()
    (spy / "ai_edge_litert").mkdir()
    (spy / "ai_edge_litert" / "__init__.py").write_text("")
    (spy / "ai_edge_litert" / "interpreter.py").write_text(
        "import os\n"
        f"open({str(tmp_path / 'env')!r}, 'w').write(os.environ.get('NOTIFY_SOCKET', '-'))\n"
        "class Interpreter:\n"
        "    def __init__(self, *a, **k):\n"
        "        raise ValueError('spy')\n")
    monkeypatch.setenv("PYTHONPATH", str(spy))
    monkeypatch.setenv("NOTIFY_SOCKET", "/run/systemd/notify")
    why = probe_model(MODEL)
    assert why is not None and "spy" in why
    assert (tmp_path / "env").read_text() == "-"
    assert os.environ["NOTIFY_SOCKET"] == "/run/systemd/notify"  # the parent's is kept
