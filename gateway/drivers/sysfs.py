"""What the kernel-driven drivers share: finding a sysfs device by the contents of its `name` file."""

from __future__ import annotations

import os
from pathlib import Path


def find_by_name(base: Path, name: str | None) -> Path | None:
    """The first directory under `base` whose `name` file reads `name` (sorted; None if none).

    IIO and hwmon number their devices in probe order (`iio:device0`, `hwmon3`), which
    changes between boots and kernels; the `name` file is the stable handle.
    """
    try:
        entries = sorted(os.listdir(base))
    except FileNotFoundError:
        return None
    for entry in entries:
        try:
            if (base / entry / "name").read_text().strip() == name:
                return base / entry
        except OSError:
            continue  # a device going away while we look
    return None
