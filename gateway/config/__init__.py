"""The configuration: a YAML file in, a validated `Config` (or precise problems) out.

`loader` reads and validates a file (`load_config`, `parse_config`, the
cross-checks between devices); `model` and `types` are the schema; `problems`
the one-line `FILE:LINE: path: what` reports; `yamlsource` keeps line numbers;
`checks` what `check` verifies beyond the schema; `sim` where the simulator
plugs in its `sim:` check.
"""

from gateway.config.loader import load_config, parse_config
from gateway.config.model import Config
from gateway.config.problems import ConfigError, Problem

__all__ = ["Config", "ConfigError", "Problem", "load_config", "parse_config"]
