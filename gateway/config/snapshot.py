"""A config validated in a child process, rebuilt in the daemon without pydantic.

`load_validated(path)` is `load_config(path)` for every process. In the daemon
(plain models, see `gateway.config.mode`) it runs `python -m
gateway.commands.config_child FILE`: the child validates with pydantic exactly as
`check` does and writes back either the problems or every model's class and
field values; the daemon builds the same classes from them (`gateway.config.plain`).
The child lives for the validation only, at start and at each SIGHUP.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from importlib import import_module
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Any

from gateway.config import schema
from gateway.config.problems import ConfigError, Problem

if TYPE_CHECKING:
    from gateway.config.model import Config

#: The child's module (it sits at the top, where the simulator's `sim:` check plugs in).
CHILD = "gateway.commands.config_child"
#: How long the child may take (a file that blocks, a hung import): then it is killed.
#: A SIGHUP's child runs in the supervisor thread, which pings systemd's watchdog every
#: 15 s of its 30 (systemd/edge-gateway.service): 15 + this must stay below 30. A Pi
#: Zero 2 W validates in a few seconds.
CHILD_TIMEOUT = 10.0
#: The package's parent: the child imports the very code the daemon runs.
_HOME = str(Path(__file__).resolve().parent.parent.parent)


#: Checks beyond the schema, one line per problem (gateway.service.checks.start_checks:
#: what `run` and a reload check; the child runs that one).
Checks = Callable[["Config"], list[str]]


def load_validated(path: str | Path) -> Config:
    """The validated config of `path`; raises ConfigError."""
    return load_checked(path, None)[0]


def load_checked(path: str | Path, checks: Checks | None) -> tuple[Config, list[str]]:
    """The validated config of `path` and the problems `checks` finds in it (none when
    `checks` is None); raises ConfigError.

    `checks` is `gateway.service.checks.start_checks` (what `run` and a reload check),
    passed in because this layer sits below the service's. With plain models the child
    process validates and runs that same function itself (CHILD, `--deep`)."""
    if not schema.PLAIN:
        import gateway.config

        cfg = gateway.config.load_config(path)
        return cfg, checks(cfg) if checks is not None else []
    return _from_child(str(path), checks is not None)


def _from_child(path: str, deep: bool) -> tuple[Config, list[str]]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_HOME, env.get("PYTHONPATH")) if p)
    # stderr is the daemon's own: what the child logs reaches the journal as it is.
    try:
        done = subprocess.run([sys.executable, "-m", CHILD, *(["--deep"] if deep else []), path],
                              stdout=subprocess.PIPE, env=env, check=False,
                              timeout=CHILD_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise _failed(path, f"no answer within {CHILD_TIMEOUT:g} s") from None
    except OSError as exc:
        raise _failed(path, f"it could not start: {exc}") from None
    try:
        kind, body, problems = json.loads(done.stdout)
    except (ValueError, TypeError) as exc:
        raise _failed(path, f"exit {done.returncode}, {exc}") from None
    if kind == "problems":
        raise ConfigError([Problem(*p) for p in body])
    try:
        cfg: Config = restore(body)
    except (ImportError, AttributeError, TypeError, ValueError) as exc:
        # The child runs the code on disk now; this daemon, the code it started with.
        raise _failed(path, f"its answer does not fit this daemon ({exc}); was edge-gateway "
                      "upgraded without a restart?") from None
    return cfg, [str(p) for p in problems]


def _failed(path: str, why: str) -> ConfigError:
    return ConfigError([Problem(path, 0, "(file)",
                                f"the config check (a child process) failed: {why}")])


def values_of(value: Any) -> Any:
    """A validated model (and everything in it) as JSON: every object but a model's
    values is tagged with what it was (`{"tuple": [...]}`, `{"dict": [[key, value]]}`,
    `{"path": "..."}`), so `restore` builds exactly the same values again."""
    fields = getattr(type(value), "model_fields", None)
    if isinstance(fields, dict) and hasattr(value, "model_copy"):
        return {"model": f"{type(value).__module__}:{type(value).__qualname__}",
                "values": {name: values_of(getattr(value, name)) for name in fields}}
    if isinstance(value, bool | int | float | str | type(None)):
        return value
    if isinstance(value, list):
        return [values_of(v) for v in value]
    if isinstance(value, tuple | set | frozenset):
        return {type(value).__name__: [values_of(v) for v in value]}
    if isinstance(value, dict):
        return {"dict": [[values_of(k), values_of(v)] for k, v in value.items()]}
    if isinstance(value, PurePath):
        return {"path": str(value)}
    if isinstance(value, bytes):
        return {"bytes": value.hex()}
    raise TypeError(f"a config value of type {type(value).__name__} cannot be handed over")


_CONTAINERS: dict[str, Callable[[list[Any]], Any]] = {
    "tuple": tuple, "set": set, "frozenset": frozenset,
    "dict": lambda pairs: {k: v for k, v in pairs},
}


def restore(value: Any) -> Any:
    """`values_of` undone: each model built again from its class and values."""
    if isinstance(value, list):
        return [restore(v) for v in value]
    if not isinstance(value, dict):
        return value
    if "model" in value:
        module, _, qualname = value["model"].partition(":")
        cls: Any = import_module(module)
        for part in qualname.split("."):
            cls = getattr(cls, part)
        return cls(**{name: restore(v) for name, v in value["values"].items()})
    [(kind, inner)] = value.items()
    if kind == "path":
        return Path(inner)
    if kind == "bytes":
        return bytes.fromhex(inner)
    return _CONTAINERS[kind]([restore(v) for v in inner])
