"""Checks `check` runs beyond the schema: referenced files exist and are readable."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway.config import Problem


def run_checks(cfg: Any) -> list[Problem]:
    from gateway.config.yamlsource import load_with_lines

    problems: list[Problem] = []
    try:
        text = Path(cfg.source).read_text(encoding="utf-8")
        _, smap = load_with_lines(text)
    except (OSError, ValueError):
        smap = None

    def line(*path: str | int) -> int:
        return smap.line_of(tuple(path)) if smap is not None else 0

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
    if m.password_file is not None and m.username is None:
        problems.append(Problem(cfg.source, line("mqtt", "password_file"), "mqtt.password_file",
                                "a password needs mqtt.username too"))
    if cfg.http.password_file is not None:
        need_file(cfg.http.password_file, "http", "password_file")
    if cfg.metrics.listen is not None and not _importable("prometheus_client"):
        problems.append(Problem(cfg.source, line("metrics", "listen"), "metrics.listen",
                                "needs the metrics extra: pip install 'edge-gateway[metrics]'"))
    inf = cfg.inference
    if inf.enabled:
        if inf.model is None:
            problems.append(Problem(cfg.source, line("inference"), "inference.model",
                                    "required when inference is enabled"))
        else:
            need_file(inf.model, "inference", "model")
            if Path(inf.model).is_file():
                from gateway.inference.model import check_model

                why = check_model(Path(inf.model), inf.task)
                if why is not None:
                    problems.append(Problem(cfg.source, line("inference", "model"),
                                            "inference.model", why))
        need_file(inf.labels, "inference", "labels")
    return problems


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def run_warnings(cfg: Any) -> list[Problem]:
    """What works for the service but may not for whoever runs `check` (exit status 0):
    a spool the current user cannot write, device nodes missing or not accessible."""
    import getpass

    from gateway.config.yamlsource import load_with_lines
    from gateway.device_hints import check_node

    try:
        _, smap = load_with_lines(Path(cfg.source).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        smap = None

    def line(*path: str | int) -> int:
        return smap.line_of(tuple(path)) if smap is not None else 0

    warnings: list[Problem] = []
    b = cfg.buffer
    if b.durability != "memory":
        why = _not_writable(Path(b.path))
        if why is not None:
            user = getpass.getuser()
            warnings.append(Problem(cfg.source, line("buffer", "path"), "buffer.path", (
                f"warning: {why} for user {user}; `run` would fail here. The service runs as "
                f"user edge-gateway: run it by hand as that user (sudo -u edge-gateway "
                f"edge-gateway run -c {cfg.source}) or use a buffer.path you can write")))
    if not cfg.gateway.simulate:
        from gateway.config.model import I2CDevice

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


def _not_writable(path: Path) -> str | None:
    """Why the spool at `path` cannot be created or written by this user, or None."""
    import os

    if path.exists():
        if not os.access(path, os.R_OK | os.W_OK) or not os.access(path.parent, os.W_OK | os.X_OK):
            return f"{path} is not writable"
        return None
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"cannot create {path} ({parent} is not writable)"
    return None
