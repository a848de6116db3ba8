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

uninstall: disables and removes the unit, the venv, the user and the groups
install created (gateway.commands.install_record); keeps the data
(/var/lib/edge-gateway) and the configuration (/etc/edge-gateway) handed to root,
or removes them with --purge.

A symlink /usr/local/bin/edge-gateway -> the venv's command puts `edge-gateway`
on PATH (so `sudo edge-gateway uninstall` works); uninstall removes it.

`--root DIR` puts every path under DIR (staging an image, tests) and then only
does what works offline and unprivileged: the user and groups are appended to
DIR/etc/passwd, group (and shadow, gshadow when present) directly, creating
them in an empty DIR, instead of running useradd/groupadd (whose --prefix needs
root and lock files); files are owned by root:edge-gateway only when run as
root; `systemctl --root=DIR enable` makes the wants/ symlink. Never installs
OS packages.
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
import stat
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from gateway.commands.install_record import (
    drop_group_lines,
    group_members,
    hand_back,
    purge,
    read_record,
    write_record,
)

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
BIN_LINK = Path("/usr/local/bin/edge-gateway")
NOLOGIN = "/usr/sbin/nologin"
#: System accounts: ids below 1000, handed out from the top (what useradd --system does).
SYSTEM_IDS = range(999, 99, -1)

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
    """Users and groups of the target system: NSS and shadow-utils for /, the files under a --root.

    Under a --root the account files are edited directly (no lock files, no root): a
    staging directory is not a live system, and shadow-utils' --prefix needs root.
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def live(self) -> bool:
        return self.root == Path("/")

    def _path(self, name: str) -> Path:
        return self.root / "etc" / name

    def _entries(self, name: str) -> list[list[str]]:
        try:
            text = self._path(name).read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        return [line.split(":") for line in text.splitlines() if line and not line.startswith("#")]

    def group(self, name: str) -> tuple[int, set[str]] | None:
        """(gid, members) or None."""
        if self.live:
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
        if self.live:
            try:
                p = pwd.getpwnam(name)
            except KeyError:
                return None
            return p.pw_uid, p.pw_gid
        for e in self._entries("passwd"):
            if len(e) >= 4 and e[0] == name:
                return int(e[2]), int(e[3])
        return None

    # -- changes (shadow-utils on the live system, the files under a --root)

    def add_group(self, name: str) -> None:
        if self.live:
            run(["groupadd", "--system", name])
            return
        gid = self._free_id("group")
        self._append("group", f"{name}:x:{gid}:")
        self._append("gshadow", f"{name}:!::", only_if_exists=True)
        print(f"added group {name} (gid {gid}) to {self._path('group')}")

    def add_user(self, name: str, groups: Sequence[str]) -> None:
        own = self.group(name)
        if self.live:
            own_group = ["--gid", name] if own is not None else ["--user-group"]
            run(["useradd", "--system", *own_group, "--groups", ",".join(groups),
                 "--home-dir", str(STATE), "--no-create-home", "--shell", NOLOGIN,
                 "--comment", "edge-gateway daemon", name])
            return
        if own is None:
            self.add_group(name)
            own = self.group(name)
        assert own is not None
        uid = self._free_id("passwd")
        self._append("passwd", f"{name}:x:{uid}:{own[0]}:edge-gateway daemon:{STATE}:{NOLOGIN}")
        self._append("shadow", f"{name}:!*:::::::", only_if_exists=True)
        print(f"added user {name} (uid {uid}) to {self._path('passwd')}")
        self.join(name, groups)

    def join(self, name: str, groups: Sequence[str]) -> None:
        """Add user `name` to `groups` (which exist)."""
        if self.live:
            run(["usermod", "--append", "--groups", ",".join(groups), name])
            return
        for file in ("group", "gshadow"):
            path = self._path(file)
            if not path.exists():
                continue
            lines = path.read_text(encoding="utf-8").splitlines()
            for i, line in enumerate(lines):
                parts = line.split(":")
                if len(parts) >= 4 and parts[0] in groups:
                    listed = [m for m in parts[-1].split(",") if m]
                    if name not in listed:
                        parts[-1] = ",".join([*listed, name])
                        lines[i] = ":".join(parts)
            self._write(file, lines)
        print(f"added {name} to the groups {', '.join(groups)} in {self._path('group')}")

    def remove(self, user: str) -> None:
        """Remove the user, its own group, and its membership of other groups."""
        if self.live:
            if self.user(user) is not None:
                run(["userdel", user])
            if self.group(user) is not None:
                run(["groupdel", user])
            return
        for file in ("passwd", "shadow", "group", "gshadow"):
            path = self._path(file)
            if not path.exists():
                continue
            kept = []
            for line in path.read_text(encoding="utf-8").splitlines():
                parts = line.split(":")
                if parts[0] == user:
                    continue
                if file in ("group", "gshadow") and len(parts) >= 4:
                    parts[-1] = ",".join(m for m in parts[-1].split(",") if m and m != user)
                    line = ":".join(parts)
                kept.append(line)
            self._write(file, kept)
        print(f"removed user and group {user} from {self._path('passwd')} and {self._path('group')}")

    def _free_id(self, file: str) -> int:
        used = {int(e[2]) for e in self._entries(file) if len(e) >= 3 and e[2].isdigit()}
        for candidate in SYSTEM_IDS:
            if candidate not in used:
                return candidate
        raise InstallError(f"no free system id below 1000 in {self._path(file)}")

    def _append(self, file: str, line: str, *, only_if_exists: bool = False) -> None:
        path = self._path(file)
        if only_if_exists and not path.exists():
            return
        lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
        self._write(file, [*lines, line])

    def _write(self, file: str, lines: list[str]) -> None:
        """Replace an account file atomically, keeping its mode (new: passwd/group 0644,
        shadow/gshadow 0640)."""
        path = self._path(file)
        path.parent.mkdir(parents=True, exist_ok=True)
        mode = (stat.S_IMODE(path.stat().st_mode) if path.exists()
                else 0o640 if file in ("shadow", "gshadow") else 0o644)
        tmp = path.with_name(f".{file}.edge-gateway-tmp")
        tmp.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
        os.chmod(tmp, mode)
        tmp.replace(path)


def ensure_account(acc: Accounts) -> None:
    for g in DEVICE_GROUPS:
        if acc.group(g) is None:
            acc.add_group(g)
    groups = ",".join(DEVICE_GROUPS)
    if acc.user(USER) is None:
        acc.add_user(USER, DEVICE_GROUPS)
        return
    missing = [g for g in DEVICE_GROUPS if USER not in (acc.group(g) or (0, set()))[1]]
    if missing:
        acc.join(USER, missing)
    else:
        print(f"user {USER} exists, in groups {groups}")


# -- files ----------------------------------------------------------------------------------


def under(root: Path, path: Path) -> Path:
    return root / path.relative_to("/")


def set_owner(path: Path, gid: int) -> None:
    """root:GID. Only root can give files away; an unprivileged --root staging keeps
    the caller's ownership (say so once: whoever deploys the tree must fix it)."""
    if os.geteuid() == 0:
        os.chown(path, 0, gid)
    else:
        print(f"not root: {path} stays owned by uid {os.geteuid()} (on the target: "
              f"chown root:{USER} and mode {stat.S_IMODE(path.stat().st_mode):o})")


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
    print("installing edge-gateway and its dependencies into the venv (about a minute the first time)",
          flush=True)
    run([str(vpy), "-m", "pip", "install", "--upgrade", "--quiet", str(source)])


def link_command(root: Path) -> None:
    """/usr/local/bin/edge-gateway -> the venv's command, so it is on PATH (and sudo's)."""
    link = under(root, BIN_LINK)
    target = VENV / "bin" / "edge-gateway"  # the path on the target system
    if link.is_symlink() and Path(os.readlink(link)) == target:
        print(f"{link} -> {target} exists")
        return
    if link.exists() or link.is_symlink():
        print(f"{link} exists and is not this service's command; left as it is "
              f"(the service's command is {target})")
        return
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target)
    print(f"linked {link} -> {target}")


def unlink_command(root: Path) -> None:
    link = under(root, BIN_LINK)
    if link.is_symlink() and Path(os.readlink(link)) == VENV / "bin" / "edge-gateway":
        link.unlink()
        print(f"removed {link}")


def install_config(root: Path, source: Path, acc: Accounts) -> None:
    etc = under(root, ETC)
    etc.mkdir(parents=True, exist_ok=True)
    gid = (acc.group(USER) or (-1, set()))[0]
    # root owns the config; the service's group may read it (it may name secret files).
    os.chmod(etc, 0o750)
    set_owner(etc, gid)
    target = under(root, CONFIG)
    if target.exists():
        print(f"{target} exists; left as it is")
        return
    target.write_text(example_config(source), encoding="utf-8")
    os.chmod(target, 0o640)
    set_owner(target, gid)
    print(f"wrote {target}: edit it (devices, broker), then check it with "
          f"sudo edge-gateway check -c {CONFIG}")


def install_unit(root: Path, source: Path) -> bool:
    """Copy the unit; True if it changed."""
    src = unit_file(source)
    target = under(root, UNIT_DIR / UNIT_NAME)
    target.parent.mkdir(parents=True, exist_ok=True)
    new = src.read_bytes()
    if target.exists() and target.read_bytes() == new:
        print(f"{target} is up to date")
        return False
    tmp = target.with_suffix(".tmp")
    tmp.write_bytes(new)
    os.chmod(tmp, 0o644)
    tmp.replace(target)
    print(f"installed {target}")
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
    missing_groups = [g for g in (*DEVICE_GROUPS, USER) if acc.group(g) is None]
    user_missing = acc.user(USER) is None
    ensure_account(acc)
    ensure_venv(root, source, args.python)
    link_command(root)
    # What uninstall may remove (only what this or an earlier install created).
    write_record(under(root, OPT), [g for g in missing_groups if acc.group(g) is not None],
                 [USER] if user_missing and acc.user(USER) is not None else [])
    install_config(root, source, acc)
    install_unit(root, source)
    if args.no_systemctl:
        print("skipping systemctl (--no-systemctl): run systemctl daemon-reload && "
              f"systemctl enable {UNIT_NAME}")
    else:
        enable(root)
    if acc.live:
        print(f"done. Edit {CONFIG}, check it (sudo edge-gateway check), then start it: "
              f"sudo systemctl start edge-gateway; logs: journalctl -u edge-gateway -f; "
              f"data: {STATE}")
    else:
        print(f"done: staged under {root} (config {under(root, CONFIG)}, data {STATE} on the "
              "target, made by systemd at the first start)")


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
        print(f"removed {unit}")
    if not args.no_systemctl and root == Path("/"):
        systemctl(root, "daemon-reload")
    unlink_command(root)
    opt = under(root, OPT)
    record = read_record(opt)
    if opt.exists():
        shutil.rmtree(opt)
        print(f"removed {opt}")
    remove_accounts(root, acc, record, purge_data=args.purge)


def remove_accounts(root: Path, acc: Accounts, record: dict[str, list[str]],
                    purge_data: bool) -> None:
    """The user, its group and the groups install created; the data kept but handed to
    root (or purged), so nothing stays owned by an id that no longer exists."""
    data = [under(root, ETC), under(root, STATE)]
    # Without a record (an older install) the user was ours; device groups are kept.
    ours = set(record["users"]) if record["users"] or record["groups"] else {USER}
    user = acc.user(USER) if USER in ours else None
    gone_uids = {user[0]} if user is not None else set()
    gone_gids: set[int] = set()
    own = acc.group(USER)
    if user is not None:
        acc.remove(USER)  # the user, its own group, its memberships
    if own is not None and acc.group(USER) is None:
        gone_gids.add(own[0])
    for name in record["groups"]:
        if name == USER:
            continue
        g = acc.group(name)
        if g is None:
            continue
        others = group_members(root, name)
        if others:
            print(f"kept group {name}: it has other members now ({', '.join(sorted(others))})")
            continue
        if acc.live:
            run(["groupdel", name])
        else:
            drop_group_lines(root, name)
        print(f"removed group {name} (created by install)")
        gone_gids.add(g[0])
    if purge_data:
        for path in purge(data):
            print(f"removed {path} (--purge)")
        return
    if gone_uids or gone_gids:
        changed = hand_back(data, gone_uids, gone_gids)
        if changed:
            print(f"handed {len(changed)} files in {data[0]} and {data[1]} to root (their user "
                  "and group no longer exist)")
    print(f"kept {data[1]} (data: readings not yet delivered) and {data[0]} (configuration), "
          "owned by root; `uninstall --purge` removes them")


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
        ("uninstall", "remove the service, venv, user and the groups install created; keeps "
                      "data and configuration (owned by root) unless --purge"),
    ):
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("--root", default="/", metavar="DIR",
                       help="install under DIR instead of / (staging, tests)")
        p.add_argument("--no-systemctl", action="store_true",
                       help="do not run systemctl (daemon-reload/enable/disable)")
        if name == "uninstall":
            p.add_argument("--purge", action="store_true",
                           help=f"also remove {ETC} (configuration) and {STATE} (spool)")
        if name == "install":
            p.add_argument("--source", metavar="PATH",
                           help="project checkout or wheel to install (default: this checkout)")
            p.add_argument("--python", default=shutil.which("python3") or sys.executable,
                           help="interpreter for the venv (default: python3)")
        p.set_defaults(func="gateway.commands.install:main")
