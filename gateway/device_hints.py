"""What to do when a device node cannot be opened: the fix, not just the errno.

Raspberry Pi OS gives `/dev/i2c-*` to group `i2c` and serial ports to group
`dialout` (mode 0660), and has no `/dev/i2c-1` until I2C is enabled.
"""

from __future__ import annotations

import errno
import grp
import os
import re
from pathlib import Path

ENABLE_I2C = ("enable I2C with 'sudo raspi-config nonint do_i2c 0' (or dtparam=i2c_arm=on in "
              "/boot/firmware/config.txt) and reboot")
SERIAL_MISSING = ("is it plugged in? 'ls -l /dev/serial/by-id/' lists the USB serial ports "
                  "(the header UART: enable it in sudo raspi-config, Interface Options)")

_I2C = re.compile(r"^/dev/i2c-\d+$")
_PATH_IN_TEXT = re.compile(r"(/dev/\S+?)['\":]?(?:\s|$)")


def group_hint(path: str) -> str:
    """`add the user to group G` for the group that owns `path` (i2c, dialout, ...)."""
    try:
        group = grp.getgrgid(os.stat(path).st_gid).gr_name
    except (OSError, KeyError):
        group = "i2c" if _I2C.match(path) else "dialout"
    return (f"add the user to group {group} (sudo usermod -aG {group} $USER, then log in "
            f"again; the service's user edge-gateway is in it already)")


def hint(path: str, err: int | None) -> str | None:
    """The advice for `path` failing with `err` (an errno), or None when there is none."""
    if err in (errno.EACCES, errno.EPERM):
        return group_hint(path)
    if err == errno.ENOENT:
        if _I2C.match(path):
            return ENABLE_I2C
        if path.startswith("/dev/tty") or path.startswith("/dev/serial/"):
            return SERIAL_MISSING
    return None


def hint_for(exc: BaseException) -> str | None:
    """The advice for an exception from opening a device (smbus2, pyserial), if any."""
    if not isinstance(exc, OSError):
        return None
    path = exc.filename if isinstance(exc.filename, str) else None
    err = exc.errno
    text = str(exc)
    if path is None:  # pyserial: "could not open port /dev/ttyUSB0: [Errno 2] No such file..."
        m = _PATH_IN_TEXT.search(text)
        path = m.group(1) if m else None
    if path is None or not path.startswith("/dev/"):
        return None
    inner = re.findall(r"\[Errno (\d+)\]", text)
    if inner:
        err = int(inner[-1])
    return hint(path, err)


def check_node(path: str) -> str | None:
    """`check`'s look at a device node: None when it can be opened read-write, else why."""
    p = Path(path)
    if not p.exists():
        why = hint(path, errno.ENOENT)
        return f"{path} does not exist" + (f": {why}" if why else "")
    if not os.access(path, os.R_OK | os.W_OK):
        return f"{path}: permission denied: {hint(path, errno.EACCES)}"
    return None
