"""`sudo edge-gateway install` / `uninstall`: the gateway as a systemd service.

install (idempotent: run it again to upgrade):
  1. system groups i2c, dialout, video, gpio (those Raspberry Pi OS's udev rules
     use; created if missing) and the system user `edge-gateway` in them;
  2. a venv in /opt/edge-gateway/venv (with system site packages, for picamera2
     from apt), and this project installed into it with pip: works on PEP 668
     distributions, which refuse system-wide pip installs;
  3. /etc/edge-gateway/config.yaml from config/example-pi.yaml, only if absent;
  4. the unit in /etc/systemd/system, daemon-reload, enable (and restart if it
     was running, so an upgrade takes effect).

uninstall: disables and removes the unit, the venv and the user; keeps the
data (/var/lib/edge-gateway) and the configuration (/etc/edge-gateway).

`--root DIR` puts every path under DIR (staging and tests), and then only does
what works offline (`systemctl --root=DIR enable`). Never installs OS packages.
Only the standard library is used here: `make install` runs it with the
system's python3 before any dependency is installed.
"""

from __future__ import annotations

import argparse
import grp
import logging
import os
import pwd
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger("gateway.install")

USER = "edge-gateway"
DEVICE_GROUPS = ("i2c", "dialout", "video", "gpio")
UNIT_NAME = "edge-gateway.service"
OPT = Path("/opt/edge-gateway")
VENV = OPT / "venv"
ETC = Path("/etc/edge-gateway")
CONFIG = ETC / "config.yaml"
STATE = Path("/var/lib/edge-gateway")
UNIT_DIR = Path("/etc/systemd/system")
NOLOGIN = "/usr/sbin/nologin"

CHECKOUT = Path(__file__).resolve().parents[2]

MINIMAL_CONFIG = """\
# edge-gateway configuration (see `edge-gateway check -c` and docs/deploy.md).
gateway:
  id: raspberrypi
  simulate: false
mqtt:
  host: localhost
  port: 1883
buffer:
  path: /var/lib/edge-gateway/spool.db
devices: []
"""


class InstallError(Exception):
    pass


# -- running commands (the one place that touches the system) ----------------------------


def run(cmd: Sequence[str]) -> None:
    """Run a command, echoing it; raises InstallError when it fails."""
    print("+ " + " ".join(str(c) for c in cmd), flush=True)
    try:
        subprocess.run([str(c) for c in cmd], check=True)
    except FileNotFoundError as exc:
        raise InstallError(f"{cmd[0]}: not found ({exc.strerror})") from None
    except subprocess.CalledProcessError as exc:
        raise InstallError(f"{' '.join(str(c) for c in cmd)} failed with exit code "
                           f"{exc.returncode}") from None


def capture(cmd: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, check=False)


# -- users and groups ---------------------------------------------------------------------


class Accounts:
    """Reads users/groups of the target system: NSS for /, the files under a --root."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def prefix_args(self) -> list[str]:
        # shadow-utils' --prefix edits DIR/etc/{passwd,group,...} without chroot.
        return [] if self.root == Path("/") else ["--prefix", str(self.root)]

    def _entries(self, name: str) -> list[list[str]]:
        path = self.root / "etc" / name
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        return [line.split(":") for line in text.splitlines() if line and not line.startswith("#")]

    def group(self, name: str) -> tuple[int, set[str]] | None:
        """(gid, members) or None."""
        if self.root == Path("/"):
            try:
                g = grp.getgrnam(name)
            except KeyError:
                return None
            return g.gr_gid, set(g.gr_mem)
        for e in self._entries("group"):
            if len(e) >= 4 and e[0] == name:
                return int(e[2]), {m for m in e[3].split(",") if m}
        return None

    def user(self, name: str) -> tuple[int, int] | None:
        """(uid, primary gid) or None."""
        if self.root == Path("/"):
            try:
                p = pwd.getpwnam(name)
            except KeyError:
                return None
            return p.pw_uid, p.pw_gid
        for e in self._entries("passwd"):
            if len(e) >= 4 and e[0] == name:
                return int(e[2]), int(e[3])
        return None


def ensure_account(acc: Accounts) -> None:
    for g in DEVICE_GROUPS:
        if acc.group(g) is None:
            run(["groupadd", "--system", *acc.prefix_args, g])
    groups = ",".join(DEVICE_GROUPS)
    if acc.user(USER) is None:
        own_group = ["--gid", USER] if acc.group(USER) is not None else ["--user-group"]
        run(["useradd", "--system", *own_group, "--groups", groups,
             "--home-dir", str(STATE), "--no-create-home", "--shell", NOLOGIN,
             "--comment", "edge-gateway daemon", *acc.prefix_args, USER])
        return
    missing = [g for g in DEVICE_GROUPS if USER not in (acc.group(g) or (0, set()))[1]]
    if missing:
        run(["usermod", "--append", "--groups", ",".join(missing), *acc.prefix_args, USER])
    else:
        print(f"user {USER} exists, in groups {groups}")


# -- files ----------------------------------------------------------------------------------


def under(root: Path, path: Path) -> Path:
    return root / path.relative_to("/")


def find_source(source: str | None) -> Path:
    """The project to install: --source (a checkout or a wheel), else this checkout."""
    if source is not None:
        p = Path(source).resolve()
        if not p.exists():
            raise InstallError(f"--source {source}: no such file or directory")
        return p
    if (CHECKOUT / "pyproject.toml").exists():
        return CHECKOUT
    raise InstallError("cannot find the project checkout; pass --source DIR_OR_WHEEL")


def unit_file(source: Path) -> Path:
    for base in (source if source.is_dir() else source.parent, CHECKOUT):
        candidate = base / "systemd" / UNIT_NAME
        if candidate.exists():
            return candidate
    raise InstallError(f"cannot find systemd/{UNIT_NAME} (run from a checkout)")


def example_config(source: Path) -> str:
    for base in (source if source.is_dir() else source.parent, CHECKOUT):
        candidate = base / "config" / "example-pi.yaml"
        if candidate.exists():
            return candidate.read_text(encoding="utf-8")
    return MINIMAL_CONFIG


def ensure_venv(root: Path, source: Path, python: str) -> None:
    venv = under(root, VENV)
    vpy = venv / "bin" / "python"
    if not vpy.exists():
        venv.parent.mkdir(parents=True, exist_ok=True)
        try:
            # System site packages: picamera2 and libcamera come from apt on Pi OS.
            run([python, "-m", "venv", "--system-site-packages", str(venv)])
        except InstallError as exc:
            raise InstallError(f"{exc}; on Debian / Raspberry Pi OS install python3-venv "
                               "(sudo apt-get install python3-venv) and run this again") from None
    else:
        print(f"venv {venv} exists")
    run([str(vpy), "-m", "pip", "install", "--upgrade", "--quiet", str(source)])


def install_config(root: Path, source: Path, acc: Accounts) -> None:
    etc = under(root, ETC)
    etc.mkdir(parents=True, exist_ok=True)
    gid = (acc.group(USER) or (-1, set()))[0]
    # root owns the config; the service's group may read it (it may name secret files).
    os.chown(etc, 0, gid)
    os.chmod(etc, 0o750)
    target = under(root, CONFIG)
    if target.exists():
        print(f"{CONFIG} exists; left as it is")
        return
    target.write_text(example_config(source), encoding="utf-8")
    os.chown(target, 0, gid)
    os.chmod(target, 0o640)
    print(f"wrote {CONFIG}: edit it (devices, broker), then check it with "
          f"edge-gateway check -c {CONFIG}")


def install_unit(root: Path, source: Path) -> bool:
    """Copy the unit; True if it changed."""
    src = unit_file(source)
    target = under(root, UNIT_DIR / UNIT_NAME)
    target.parent.mkdir(parents=True, exist_ok=True)
    new = src.read_bytes()
    if target.exists() and target.read_bytes() == new:
        print(f"{UNIT_DIR / UNIT_NAME} is up to date")
        return False
    tmp = target.with_suffix(".tmp")
    tmp.write_bytes(new)
    os.chmod(tmp, 0o644)
    tmp.replace(target)
    print(f"installed {UNIT_DIR / UNIT_NAME}")
    return True


# -- systemctl --------------------------------------------------------------------------------


def systemctl(root: Path, *args: str) -> None:
    if root == Path("/"):
        run(["systemctl", *args])
    else:
        run(["systemctl", f"--root={root}", *args])


def enable(root: Path) -> None:
    if root != Path("/"):
        systemctl(root, "enable", UNIT_NAME)  # offline: just the wants/ symlink
        return
    systemctl(root, "daemon-reload")
    systemctl(root, "enable", UNIT_NAME)
    # Running already (an upgrade): restart it on the new code and unit.
    systemctl(root, "try-restart", UNIT_NAME)


# -- commands -----------------------------------------------------------------------------------


def do_install(args: argparse.Namespace) -> None:
    root = Path(args.root).resolve()
    acc = Accounts(root)
    source = find_source(args.source)
    unit_file(source)  # fail early, before changing anything
    ensure_account(acc)
    ensure_venv(root, source, args.python)
    install_config(root, source, acc)
    install_unit(root, source)
    if args.no_systemctl:
        print("skipping systemctl (--no-systemctl): run systemctl daemon-reload && "
              f"systemctl enable {UNIT_NAME}")
    else:
        enable(root)
    print(f"done. Start it: sudo systemctl start edge-gateway; logs: journalctl -u edge-gateway "
          f"-f; config: {CONFIG}; data: {STATE}")


def do_uninstall(args: argparse.Namespace) -> None:
    root = Path(args.root).resolve()
    acc = Accounts(root)
    unit = under(root, UNIT_DIR / UNIT_NAME)
    if not args.no_systemctl and unit.exists():
        if root == Path("/"):
            systemctl(root, "disable", "--now", UNIT_NAME)
        else:
            systemctl(root, "disable", UNIT_NAME)
    if unit.exists():
        unit.unlink()
        print(f"removed {UNIT_DIR / UNIT_NAME}")
    if not args.no_systemctl and root == Path("/"):
        systemctl(root, "daemon-reload")
    opt = under(root, OPT)
    if opt.exists():
        shutil.rmtree(opt)
        print(f"removed {OPT}")
    if acc.user(USER) is not None:
        run(["userdel", *acc.prefix_args, USER])
    if acc.group(USER) is not None:
        run(["groupdel", *acc.prefix_args, USER])
    print(f"kept {STATE} (data) and {ETC} (configuration); remove them by hand if unwanted")


def _check_root(args: argparse.Namespace) -> None:
    if Path(args.root).resolve() == Path("/") and os.geteuid() != 0:
        raise InstallError("must run as root: sudo edge-gateway " + args.command)


def main(args: argparse.Namespace) -> int:
    try:
        _check_root(args)
        if args.command == "uninstall":
            do_uninstall(args)
        else:
            do_install(args)
    except InstallError as exc:
        print(f"edge-gateway {args.command}: {exc}", file=sys.stderr)
        return 1
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    for name, text in (
        ("install", "install as a systemd service (user, venv, config, unit); idempotent"),
        ("uninstall", "remove the service, venv and user; keeps data and configuration"),
    ):
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("--root", default="/", metavar="DIR",
                       help="install under DIR instead of / (staging, tests)")
        p.add_argument("--no-systemctl", action="store_true",
                       help="do not run systemctl (daemon-reload/enable/disable)")
        if name == "install":
            p.add_argument("--source", metavar="PATH",
                           help="project checkout or wheel to install (default: this checkout)")
            p.add_argument("--python", default=shutil.which("python3") or sys.executable,
                           help="interpreter for the venv (default: python3)")
        p.set_defaults(func="gateway.commands.install:main")
