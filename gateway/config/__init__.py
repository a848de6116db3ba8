"""The configuration: a YAML file in, a validated `Config` (or precise problems) out.

`loader` reads and validates a file (`load_config`, `parse_config`, the
cross-checks between devices); `model` and `types` are the schema; `problems`
the one-line `FILE:LINE: path: what` reports; `yamlsource` keeps line numbers;
`checks` what `check` verifies beyond the schema; `sim` where the simulator
plugs in its `sim:` check.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.config.loader import load_config, parse_config
    from gateway.config.model import Config
    from gateway.config.problems import ConfigError, Problem

__all__ = ["Config", "ConfigError", "Problem", "load_config", "parse_config"]

# Loaded when first asked for, not with the package: the daemon imports modules of
# this package without ever loading the loader (and pydantic; see `mode`).
_HOME = {"load_config": "loader", "parse_config": "loader", "Config": "model",
         "ConfigError": "problems", "Problem": "problems"}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)
