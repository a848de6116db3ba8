"""Credentials and TLS for the broker: the password (a file or the environment), secret
file modes, and the SSL context. Used by the publisher, `edge-gateway watch` and the
status page (its password file).

Secrets are read once at start and never logged; a secret file that others can
read gets a warning (not a refusal: a Pi image may ship it that way).
"""

from __future__ import annotations

import logging
import os
import ssl
import stat
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    # Types only: `edge-gateway watch` imports this module while the CLI builds its parser,
    # which must work with the standard library alone (see gateway.commands).
    from gateway.config.model import Config, TlsSection

log = logging.getLogger("gateway.mqtt")


class SecretError(Exception):
    """The broker password cannot be read."""


def warn_if_others_can_read(path: Path, what: str, mode: int) -> bool:
    """Warn when a secret's file is readable (or writable) by others. True if warned."""
    if mode & (stat.S_IROTH | stat.S_IWOTH):
        log.warning(
            "%s %s is readable by others (mode %o); chmod 600 it (or 640 with group "
            "edge-gateway)", what, path, stat.S_IMODE(mode),
        )
        return True
    return False


def read_secret_file(path: Path, what: str, *, allow_empty: bool = False) -> str:
    """A secret kept in a file: its first line, without the line end (never logged).
    `what` names the setting in errors; a file others can read gets a warning."""
    try:
        st = path.stat()
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SecretError(f"cannot read {what} {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise SecretError(f"{what} {path} is not UTF-8 text") from None
    warn_if_others_can_read(path, what, st.st_mode)
    secret = text.strip("\r\n")
    if not secret and not allow_empty:
        raise SecretError(f"{what} {path} is empty")
    return secret


def read_password(cfg: Config) -> str | None:
    """The broker password from `password_file` or `password_env` (never logged)."""
    m = cfg.mqtt
    if m.tls is not None and m.tls.key_file is not None:
        try:
            warn_if_others_can_read(m.tls.key_file, "mqtt.tls.key_file",
                                    Path(m.tls.key_file).stat().st_mode)
        except OSError as exc:
            raise SecretError(f"cannot read mqtt.tls.key_file {m.tls.key_file}: "
                              f"{exc.strerror}") from None
    if m.password_file is not None:
        return read_secret_file(Path(m.password_file), "mqtt.password_file", allow_empty=True)
    if m.password_env is not None:
        value = os.environ.get(m.password_env)
        if value is None:
            raise SecretError(f"mqtt.password_env: environment variable {m.password_env} is not set")
        return value
    return None


def tls_context(t: TlsSection, *, warn: bool = True) -> ssl.SSLContext:
    """The client's SSL context for `mqtt.tls` (CA, client certificate, minimum version).

    `warn`: log that `insecure: true` skips the hostname check (the daemon says so; a
    one-off `watch` need not).
    """
    ctx = ssl.create_default_context(cafile=str(t.ca_file) if t.ca_file else None)
    ctx.minimum_version = (
        ssl.TLSVersion.TLSv1_3 if t.min_version == "1.3" else ssl.TLSVersion.TLSv1_2
    )
    if t.cert_file is not None:
        ctx.load_cert_chain(str(t.cert_file), str(t.key_file) if t.key_file else None)
    if t.insecure:
        if warn:
            log.warning(
                "mqtt.tls.insecure is true: the broker's certificate hostname is NOT checked; "
                "anyone on the network path can impersonate the broker"
            )
        ctx.check_hostname = False
    return ctx
