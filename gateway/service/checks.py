"""Checks beyond the schema, run by `edge-gateway check` and before a reload applies.

Referenced files must exist (`gateway.config.checks`); an enabled inference
model must load and fit its task and labels (`gateway.inference.model.check_model`).
"""

from __future__ import annotations

from pathlib import Path

from gateway.config.checks import line_finder, run_checks
from gateway.config.model import Config
from gateway.config.problems import Problem


def deep_checks(cfg: Config) -> list[str]:
    """One line per problem, `FILE:LINE: path: what` (empty: all good)."""
    problems = run_checks(cfg)
    inf = cfg.inference
    if inf.enabled and inf.model is not None and Path(inf.model).is_file():
        # Here, not at the top: the model check loads numpy and the interpreter, which a
        # config without inference never needs.
        from gateway.inference.model import check_model

        labels = inf.labels if inf.labels is not None and Path(inf.labels).is_file() else None
        why = check_model(Path(inf.model), inf.task, labels, preset=inf.preset, mean=inf.mean,
                          std=inf.std)
        if why is not None:
            line = line_finder(cfg)
            problems.append(Problem(cfg.source, line("inference", "model"), "inference.model", why))
    return [str(p) for p in problems]
