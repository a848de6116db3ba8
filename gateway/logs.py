"""Logging to stderr; under systemd (JOURNAL_STREAM set) with syslog priority prefixes."""

from __future__ import annotations

import logging
import os
import sys

_PRIORITY = {
    logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6, logging.DEBUG: 7,
}


class JournalFormatter(logging.Formatter):
    """`<3>gateway: message` — journald reads the prefix as the priority (sd-daemon(3))."""

    def format(self, record: logging.LogRecord) -> str:
        level = max((lv for lv in _PRIORITY if lv <= record.levelno), default=logging.DEBUG)
        text = super().format(record)
        prefix = f"<{_PRIORITY[level]}>"
        return "\n".join(prefix + line for line in text.splitlines())


def under_journal() -> bool:
    """True when stderr is connected to the journal (systemd sets JOURNAL_STREAM=dev:inode)."""
    stream = os.environ.get("JOURNAL_STREAM")
    if not stream:
        return False
    try:
        dev, ino = (int(x) for x in stream.split(":"))
        st = os.fstat(sys.stderr.fileno())
    except (ValueError, OSError):
        return False
    return (st.st_dev, st.st_ino) == (dev, ino)


def print_error(line: str) -> None:
    """One problem line on stderr for a person or systemd to read (not a log record).

    Under the journal it carries the error priority (`<3>`), so
    `journalctl -u edge-gateway -p err` shows why a start or reload failed;
    in a terminal it is printed as is (`check`'s `FILE:LINE: path: message`).
    """
    prefix = f"<{_PRIORITY[logging.ERROR]}>" if under_journal() else ""
    sys.stderr.write("".join(f"{prefix}{part}\n" for part in line.splitlines() or [""]))
    sys.stderr.flush()


def setup_logging(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if under_journal():
        handler.setFormatter(JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # paho logs every packet at DEBUG; keep it quiet unless asked for.
    logging.getLogger("gateway.mqtt.paho").setLevel(
        logging.DEBUG if level.lower() == "debug" else logging.CRITICAL
    )
