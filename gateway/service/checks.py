"""Checks beyond the schema, run by `edge-gateway check` and before a reload applies.

Referenced files must exist (`gateway.config.checks`); an enabled inference
model must load and fit its task and labels (`gateway.inference.model.check_model`,
run in a child process by `gateway.inference.probe`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.config.model import Config


def deep_checks(cfg: Config, load_model: bool = True) -> list[str]:
    """One line per problem, `FILE:LINE: path: what` (empty: all good).

    `load_model`: also load the inference model, in a child process
    (gateway.inference.probe: a runtime that crashes costs one line, not the caller).
    `run` and a reload skip it: a model that does not load is the inference
    supervisor's to retry, never a reason to keep the sensors down."""
    # Here, not at the top: the daemon hands these checks to its config child and never
    # runs them itself (gateway.config.snapshot).
    from gateway.config.checks import line_finder, run_checks
    from gateway.config.problems import Problem

    problems = run_checks(cfg)
    inf = cfg.inference
    if load_model and inf.enabled and inf.model is not None and Path(inf.model).is_file():
        from gateway.inference.probe import probe_model

        labels = inf.labels if inf.labels is not None and Path(inf.labels).is_file() else None
        why = probe_model(Path(inf.model), inf.task, labels, preset=inf.preset, mean=inf.mean,
                          std=inf.std)
        if why is not None:
            line = line_finder(cfg)
            problems.append(Problem(cfg.source, line("inference", "model"), "inference.model", why))
    return [str(p) for p in problems]


def start_checks(cfg: Config) -> list[str]:
    """What `run` and a reload check beyond the schema. Not the model: one that does not
    load is the inference supervisor's to retry, never a reason to keep the sensors down
    (and inference changes need a restart anyway)."""
    return deep_checks(cfg, load_model=False)
