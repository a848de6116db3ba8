"""The daemon's answer to `systemctl reload`, so a rejected config fails the reload.

`ExecReload=` must not return before the reload is done, and its exit status is
what `systemctl reload` reports (systemd 252 has no `Type=notify-reload`, which
would need 253+). So `ExecReload=edge-gateway reload --pid $MAINPID` binds a
unix datagram socket in the runtime directory, sends SIGHUP, and waits for one
datagram from the daemon:

    ok <summary>                      the new config is in use (or unchanged)
    rejected <summary>\\n<problem>...  the daemon keeps its previous config

The daemon sends it at the end of every SIGHUP reload if the socket exists (a
plain `kill -HUP` finds none, and nothing is sent). The runtime directory is
`$RUNTIME_DIRECTORY` (systemd sets it from `RuntimeDirectory=` for the service and
its `ExecReload=`), else /run/edge-gateway.
"""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

log = logging.getLogger("gateway.reload")

SOCKET_NAME = "reload.sock"
#: A datagram must fit in the socket buffer; the problems are cut to this.
MAX_REPLY = 32 * 1024


def reply_socket_path() -> Path:
    runtime = os.environ.get("RUNTIME_DIRECTORY", "").split(":")[0] or "/run/edge-gateway"
    return Path(runtime) / SOCKET_NAME


def encode_reply(ok: bool, summary: str, problems: tuple[str, ...] | list[str]) -> bytes:
    lines = [("ok " if ok else "rejected ") + " ".join(summary.split())]
    lines += [" ".join(p.split()) for p in problems]
    data = "\n".join(lines).encode("utf-8", "replace")
    return data[:MAX_REPLY]


def decode_reply(data: bytes) -> tuple[bool, str, list[str]]:
    text = data.decode("utf-8", "replace").splitlines() or [""]
    verdict, _, summary = text[0].partition(" ")
    return verdict == "ok", summary, text[1:]


def send_reply(ok: bool, summary: str, problems: tuple[str, ...] | list[str] = ()) -> bool:
    """Tell a waiting `edge-gateway reload` the outcome. False when nobody waits."""
    path = reply_socket_path()
    if not path.exists():
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.sendto(encode_reply(ok, summary, problems), str(path))
    except OSError as exc:  # a stale socket left by a killed `reload`: nobody to tell
        log.debug("reload: no one to answer on %s: %s", path, exc)
        return False
    return True
