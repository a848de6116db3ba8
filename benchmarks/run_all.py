"""Run every benchmark, print one table, write benchmarks/results/<timestamp>.json and .png.

`make bench` runs this. Each bench module exposes `run() -> list[Result]`; a module
that has none (bench_inference prints its own table from `main()`) is run as a
subprocess and its output is printed after the table and kept in the JSON.
A module that fails is reported as a failed row; the others still run.

Usage: run_all.py [--only NAME[,NAME...]] [--skip NAME[,NAME...]]
(names without the `bench_` prefix: throughput, idle, memory, latency, writes, smallpi, startup,
fleet, inference; bench_outage_rss.py runs on its own: it takes minutes)
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import PY, REPO, Result, print_results

#: In run order. Idle first: it wants the quietest machine.
MODULES = ("idle", "throughput", "memory", "latency", "writes", "smallpi", "startup", "fleet",
           "inference")
RESULTS_DIR = REPO / "benchmarks" / "results"
HISTORY = 20  # earlier runs shown in the chart


def run_module(name: str) -> tuple[list[Result], str]:
    """(results, extra printed output) of one bench module."""
    path = REPO / "benchmarks" / f"bench_{name}.py"
    if not path.exists():
        return [], ""
    mod = importlib.import_module(f"benchmarks.bench_{name}")
    run = getattr(mod, "run", None)
    if callable(run):
        results = run()
        assert isinstance(results, list)
        return results, ""
    # No run(): its own table, as a subprocess (bench_inference).
    p = subprocess.run([PY, str(path)], capture_output=True, text=True, cwd=REPO, timeout=240)
    if p.returncode != 0:
        raise RuntimeError(f"exit {p.returncode}: {p.stderr[-2000:]}")
    return [], p.stdout


def _clean(v: Any) -> Any:
    return None if isinstance(v, float) and not math.isfinite(v) else v


def write_json(path: Path, meta: dict[str, Any], results: list[Result],
               outputs: dict[str, str]) -> None:
    rows = [{k: _clean(v) for k, v in r.as_dict().items()} for r in results]
    path.write_text(json.dumps({**meta, "results": rows, "outputs": outputs}, indent=2) + "\n")


def history(limit: int) -> list[dict[str, Any]]:
    runs = []
    for f in sorted(RESULTS_DIR.glob("*.json"))[-limit:]:
        try:
            runs.append(json.loads(f.read_text()))
        except (OSError, ValueError) as exc:
            print(f"run_all: skipping unreadable {f}: {exc}", file=sys.stderr)
    return runs


def write_chart(path: Path, results: list[Result], runs: list[dict[str, Any]]) -> None:
    """Left: this run's ratios against their baselines. Right: ratios over recent runs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rated = [r for r in results if r.ratio is not None and math.isfinite(r.ratio) and r.ratio > 0]
    fig, (left, right) = plt.subplots(1, 2, figsize=(15, max(4.0, 0.35 * len(rated) + 1.5)),
                                      gridspec_kw={"width_ratios": [1.2, 1.0]})
    colors = {True: "tab:green", False: "tab:red", None: "tab:gray"}
    names = [r.name for r in rated]
    ratios = [float(r.ratio or 0) for r in rated]
    left.barh(range(len(rated)), ratios, color=[colors[r.met] for r in rated])
    left.set_yticks(range(len(rated)), names, fontsize=7)
    left.invert_yaxis()
    left.set_xscale("log")
    left.axvline(1.0, color="black", linewidth=0.8)
    left.set_xlabel("value / baseline (log; green: goal met, red: not met, gray: no goal)")
    left.set_title("this run")
    for i, r in enumerate(rated):
        left.text(ratios[i], i, f" {r.value:.3g} {r.unit}", va="center", fontsize=6)
    # Metrics with a goal; those without a baseline (idle CPU) by value.
    tracked = [r.name for r in results if r.met is not None and math.isfinite(r.value)]
    for name in tracked:
        xs, ys = [], []
        for i, run in enumerate(runs):
            for row in run.get("results", []):
                y = row.get("ratio") or row.get("value")
                if row.get("name") == name and isinstance(y, int | float) and y > 0:
                    xs.append(i)
                    ys.append(float(y))
        if xs:
            right.plot(xs, ys, marker="o", label=name)
    right.set_yscale("log")
    right.xaxis.get_major_locator().set_params(integer=True)
    right.set_xlabel(f"run (last {len(runs)}, oldest first)")
    right.set_ylabel("value / baseline (or value where there is no baseline)")
    right.set_title("metrics with a goal, over runs")
    if tracked:
        right.legend(fontsize=6)
    fig.tight_layout()
    fig.subplots_adjust(left=0.2)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    ap.add_argument("--only", default="", help="comma-separated module names to run")
    ap.add_argument("--skip", default="", help="comma-separated module names to skip")
    args = ap.parse_args(argv)
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    chosen = [m for m in MODULES if (not only or m in only) and m not in skip]

    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    t_start = time.monotonic()
    results: list[Result] = []
    outputs: dict[str, str] = {}
    timings: dict[str, float] = {}
    errors: dict[str, str] = {}
    for name in chosen:
        print(f"== bench_{name}", flush=True)
        t0 = time.monotonic()
        try:
            rows, out = run_module(name)
        except Exception as exc:  # noqa: BLE001 - one broken bench must not hide the others
            traceback.print_exc()
            errors[name] = f"{type(exc).__name__}: {exc}"
            rows, out = [Result(f"{name}: FAILED", float("nan"), "", note=errors[name],
                                met=False)], ""
        timings[name] = round(time.monotonic() - t0, 1)
        print(f"   ({timings[name]:.0f} s)", flush=True)
        results.extend(rows)
        if out:
            outputs[name] = out

    total = time.monotonic() - t_start
    print()
    print_results(results)
    for name, out in outputs.items():
        print(f"\n-- bench_{name} (own table)\n{out.rstrip()}")

    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    meta = {
        "started_utc": stamp, "seconds": round(total, 1), "module_seconds": timings,
        "errors": errors, "python": platform.python_version(), "machine": platform.machine(),
        "cpus": os.cpu_count(), "loadavg_after": os.getloadavg(),
    }
    json_path = RESULTS_DIR / f"{stamp}.json"
    write_json(json_path, meta, results, outputs)
    png_path = RESULTS_DIR / f"{stamp}.png"
    try:
        write_chart(png_path, results, history(HISTORY))
    except ImportError as exc:
        print(f"run_all: no chart ({exc}); install the bench extra", file=sys.stderr)
    else:
        print(f"\nchart: {png_path}")
    print(f"results: {json_path}\ntotal {total:.0f} s "
          f"({', '.join(f'{k} {v:.0f} s' for k, v in timings.items())})")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
