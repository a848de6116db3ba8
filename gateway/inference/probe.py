"""Load and validate a model in a child process, so a crashing runtime cannot take
`check`, a reload or the demo down with it.

A TFLite runtime is native code: a broken wheel or an unsupported CPU ends the
process with SIGSEGV or SIGILL in `Interpreter.__init__`, which no `except`
catches (ai-edge-litert 2.3.0 under qemu-aarch64 did exactly that). The parent
here only starts `python -m gateway.inference.probe MODEL TASK` and reads one
line back; a signal becomes a clean one-line reason:

    model could not be loaded: the runtime crashed (SIGSEGV)

This module imports nothing outside the standard library (a sensors-only
install has no numpy), and neither does the child until it loads the model.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from gateway.inference.extra import missing_extra

#: A first import of numpy and the runtime takes seconds on a Pi Zero 2; be generous.
DEFAULT_TIMEOUT = 120.0

_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


def probe_model(path: Path, task: str = "auto", labels: Path | None = None, *,
                preset: str | None = None, mean: list[float] | None = None,
                std: list[float] | None = None,
                timeout: float = DEFAULT_TIMEOUT) -> str | None:
    """Why `path` cannot serve as the inference model (one line), or None if it loads and
    fits (gateway.inference.model.check_model, run in a child process)."""
    args = json.dumps({"path": str(path), "task": task,
                       "labels": str(labels) if labels is not None else None,
                       "preset": preset, "mean": mean, "std": std})
    env = dict(os.environ)
    # The child must import this very package, also when run from a checkout.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
    for key in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        env.pop(key, None)  # the child never talks to systemd
    cmd = [sys.executable, "-m", "gateway.inference.probe", args]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout,
                              stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired:
        return f"model could not be loaded: no answer within {timeout:.0f} s"
    except OSError as exc:
        return f"model could not be checked: cannot start {sys.executable}: {exc.strerror}"
    return _verdict(proc.returncode, proc.stdout, proc.stderr)


def _verdict(code: int, out: str, err: str) -> str | None:
    lines = [line for line in out.splitlines() if line.strip()]
    if code == 0 and lines and lines[-1].startswith("ok"):
        return None
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"model could not be loaded: the runtime crashed ({name})"
    if code == 1 and lines:
        return lines[-1]
    tail = [line for line in err.splitlines() if line.strip()]
    detail = f": {tail[-1].strip()}" if tail else ""
    return f"model could not be loaded: the check exited with code {code}{detail}"


def _child(argv: list[str]) -> int:
    """In the child: print `ok` (exit 0) or one line why not (exit 1)."""
    a = json.loads(argv[0])
    try:
        from gateway.inference.model import check_model
    except ImportError as exc:
        print(missing_extra(f"no module {exc.name or exc}"), flush=True)
        return 1
    why = check_model(Path(a["path"]), a["task"],
                      Path(a["labels"]) if a["labels"] is not None else None,
                      preset=a["preset"], mean=a["mean"], std=a["std"])
    if why is not None:
        print(" ".join(why.split()), flush=True)
        return 1
    print("ok", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
