"""The inference extra's one-line "not installed" reason (standard library only: it is
said where numpy and the runtime are missing)."""

from __future__ import annotations

import sys
from pathlib import Path


def missing_extra(what: str) -> str:
    """The one-line reason for a missing optional dependency, with the command to fix it."""
    pip = Path(sys.executable).with_name("pip")
    return (f"the inference extra is not installed ({what}): {pip} install "
            f"'edge-gateway[inference]' from the project checkout; on 32-bit Raspberry Pi OS "
            f"see docs/raspberry-pi.md")
