"""Checks `check` (and a reload) run beyond the schema: referenced files exist.

That an inference model also loads is checked a layer up (`gateway.service.checks`):
it needs the inference runtime, which the config does not import.
"""

from __future__ import annotations

import getpass
import importlib.util
import os
from collections.abc import Callable
from pathlib import Path

from gateway.config.model import Config, I2CDevice
from gateway.config.problems import Problem
from gateway.device_hints import check_node


def run_checks(cfg: Config) -> list[Problem]:
    problems: list[Problem] = []
    line = line_finder(cfg)

    def need_file(value: Path | None, *path: str) -> None:
        if value is None:
            return
        p = Path(value)
        if not p.is_file():
            problems.append(Problem(cfg.source, line(*path), ".".join(path),
                                    f"file not found: {p}"))

    m = cfg.mqtt
    need_file(m.password_file, "mqtt", "password_file")
    if m.tls is not None:
        need_file(m.tls.ca_file, "mqtt", "tls", "ca_file")
        need_file(m.tls.cert_file, "mqtt", "tls", "cert_file")
        need_file(m.tls.key_file, "mqtt", "tls", "key_file")
        if m.tls.key_file is not None and m.tls.cert_file is None:
            problems.append(Problem(cfg.source, line("mqtt", "tls", "key_file"),
                                    "mqtt.tls.key_file", "given without cert_file"))
    if m.password_env is not None and m.password_env not in os.environ:
        # `password_env: hunter2` is the password itself, not the name of a variable.
        problems.append(Problem(
            cfg.source, line("mqtt", "password_env"), "mqtt.password_env",
            # Not echoed: it may be the password itself.
            "the environment variable named here is not set; password_env names the variable "
            "that holds the password (set in the service's environment, e.g. Environment= in "
            "a systemd drop-in), never the password itself"))
    for key in ("password_file", "password_env"):
        if getattr(m, key) is not None and m.username is None:
            problems.append(Problem(cfg.source, line("mqtt", key), f"mqtt.{key}",
                                    "a password needs mqtt.username too"))
    if cfg.http.password_file is not None:
        need_file(cfg.http.password_file, "http", "password_file")
    if cfg.metrics.listen is not None and not _importable("prometheus_client"):
        problems.append(Problem(cfg.source, line("metrics", "listen"), "metrics.listen",
                                "needs the metrics extra: pip install 'edge-gateway[metrics]'"))
    if not cfg.gateway.simulate and not _importable("gpiod"):
        for i, out in enumerate(cfg.outputs):
            if out.kind == "gpio":
                problems.append(Problem(cfg.source, line("outputs", i, "kind"), f"outputs.{i}.kind",
                                        "a gpio output needs the gpio extra: "
                                        "pip install 'edge-gateway[gpio]'"))
        for i, dev in enumerate(cfg.devices):
            if dev.driver in ("gpio_contact", "pulse_counter"):
                need = f"{dev.driver} needs the gpio extra: pip install 'edge-gateway[gpio]'"
                problems.append(Problem(cfg.source, line("devices", i, "driver"),
                                        f"devices.{i}.driver", need))
    if not _importable("pymodbus"):
        for i, out in enumerate(cfg.outputs):
            if out.kind in ("modbus_coil", "modbus_register"):
                problems.append(Problem(cfg.source, line("outputs", i, "kind"), f"outputs.{i}.kind",
                                        f"a {out.kind} output needs the modbus extra: "
                                        "pip install 'edge-gateway[modbus]'"))
    inf = cfg.inference
    if inf.enabled:
        if inf.model is None:
            problems.append(Problem(cfg.source, line("inference"), "inference.model",
                                    "required when inference is enabled"))
        else:
            need_file(inf.model, "inference", "model")
        need_file(inf.labels, "inference", "labels")
    return problems


def line_finder(cfg: Config) -> Callable[..., int]:
    """line(*path): the line of a dotted path in `cfg`'s file (0 if it cannot be read again)."""
    # Here: the daemon imports this module for its hints and never loads PyYAML itself.
    from gateway.config.yamlsource import file_source_map

    smap = file_source_map(cfg.source)  # None: gone or broken since it was loaded

    def line(*path: str | int) -> int:
        return smap.line_of(tuple(path)) if smap is not None else 0

    return line


def _importable(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def run_warnings(cfg: Config) -> list[Problem]:
    """What works for the service but may not for whoever runs `check` (exit status 0):
    a spool the current user cannot write, device nodes missing or not accessible."""
    line = line_finder(cfg)
    warnings: list[Problem] = []
    b = cfg.buffer
    if b.durability != "memory":
        why = not_writable(Path(b.path))
        if why is not None:
            user = getpass.getuser()
            warnings.append(Problem(cfg.source, line("buffer", "path"), "buffer.path", (
                f"warning: {why} for user {user}; `run` would fail here. "
                + run_as_service_hint(cfg.source))))
    if not cfg.gateway.simulate:
        seen: set[str] = set()
        for i, dev in enumerate(cfg.devices):
            if isinstance(dev, I2CDevice):
                node, key = f"/dev/i2c-{dev.bus}", "bus"
            else:
                port = getattr(dev, "port", None)
                if not isinstance(port, str):
                    continue
                node, key = port, "port"
            if node in seen:
                continue
            seen.add(node)
            why = check_node(node)
            if why is not None:
                where = line("devices", i, key) or line("devices", i)
                warnings.append(Problem(cfg.source, where, f"devices.{i}.{key}", f"warning: {why}"))
    return warnings


def run_as_service_hint(config: str) -> str:
    return ("The service runs as user edge-gateway: run it by hand as that user (sudo -u "
            f"edge-gateway edge-gateway run -c {config}) or use a buffer.path you can write")


def not_writable(path: Path) -> str | None:
    """Why the spool at `path` cannot be created or written by this user, or None."""
    if path.exists():
        if not os.access(path, os.R_OK | os.W_OK) or not os.access(path.parent, os.W_OK | os.X_OK):
            return f"{path} is not writable"
        return None
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        return None  # not a permission matter: opening the spool says what is wrong
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"cannot create {path} ({parent} is not writable)"
    return None
