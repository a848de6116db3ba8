"""What `install` created, so `uninstall` removes exactly that and hands back the rest.

install writes /opt/edge-gateway/install.json: the groups and the user it created
(a group that existed before, e.g. Raspberry Pi OS's own `gpio`, is not listed and
never removed). A later install adds to the record, never forgets.

uninstall then
- removes the recorded groups that no other user is a member of (a member added
  by hand keeps a group alive, and that is said);
- keeps the configuration (/etc/edge-gateway) and the spool (/var/lib/edge-gateway,
  readings not yet delivered: user data), but hands every file in them owned by
  the deleted uid or gids to root, so an account created later with the same ids
  does not inherit the config, the broker password and the spool. `--purge`
  removes both directories instead.

Standard library only (see gateway.commands.install).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

RECORD_NAME = "install.json"


def read_record(opt: Path) -> dict[str, list[str]]:
    """The record under `opt` (/opt/edge-gateway), empty if there is none (an install
    older than the record: then nothing but the user and its group is removed)."""
    try:
        data = json.loads((opt / RECORD_NAME).read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return {"groups": [], "users": []}
    return {key: [str(v) for v in data.get(key, [])] for key in ("groups", "users")}


def write_record(opt: Path, groups: Iterable[str], users: Iterable[str]) -> None:
    """Add what this install created to the record."""
    old = read_record(opt)
    record = {
        "groups": sorted(set(old["groups"]) | set(groups)),
        "users": sorted(set(old["users"]) | set(users)),
    }
    opt.mkdir(parents=True, exist_ok=True)
    tmp = opt / f".{RECORD_NAME}.tmp"
    tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    os.chmod(tmp, 0o644)
    tmp.replace(opt / RECORD_NAME)


def hand_back(dirs: Iterable[Path], uids: set[int], gids: set[int],
              chown: Callable[[Path, int, int], None] = os.lchown) -> list[Path]:
    """chown to root (0) the owner and/or group of every path in `dirs` (recursively)
    that is one of the deleted `uids`/`gids` (-1: left as is). Returns the paths changed."""
    changed: list[Path] = []
    for top in dirs:
        if not top.exists():
            continue
        paths = [top]
        for base, subdirs, files in os.walk(top):
            paths += [Path(base) / n for n in (*subdirs, *files)]
        for path in paths:
            st = path.lstat()
            uid = 0 if st.st_uid in uids else -1
            gid = 0 if st.st_gid in gids else -1
            if uid == -1 and gid == -1:
                continue
            try:
                chown(path, uid, gid)
            except PermissionError:  # an unprivileged --root staging: say what is left
                print(f"not root: {path} keeps uid {st.st_uid} gid {st.st_gid}; "
                      "chown it to root:root on the target")
                continue
            changed.append(path)
    return changed


def purge(dirs: Iterable[Path]) -> list[Path]:
    removed = []
    for d in dirs:
        if d.is_dir() and not d.is_symlink():
            shutil.rmtree(d)
            removed.append(d)
        elif d.exists() or d.is_symlink():
            d.unlink()
            removed.append(d)
    return removed


def group_members(root: Path, name: str) -> set[str] | None:
    """Members of group `name` in root/etc/group (and users with it as their primary
    group, from root/etc/passwd); None if the group does not exist."""
    entries = _entries(root, "group")
    found = next((e for e in entries if len(e) >= 4 and e[0] == name), None)
    if found is None:
        return None
    members = {m for m in found[3].split(",") if m}
    members |= {u[0] for u in _entries(root, "passwd") if len(u) >= 4 and u[3] == found[2]}
    return members


def drop_group_lines(root: Path, name: str) -> None:
    """Remove group `name` from root/etc/group and gshadow (an offline --root tree;
    the live system uses groupdel)."""
    for file in ("group", "gshadow"):
        path = root / "etc" / file
        if not path.exists():
            continue
        lines = path.read_text(encoding="utf-8").splitlines()
        kept = [line for line in lines if line.split(":", 1)[0] != name]
        if kept != lines:
            mode = path.stat().st_mode & 0o7777
            tmp = path.with_name(f".{file}.edge-gateway-tmp")
            tmp.write_text("".join(f"{line}\n" for line in kept), encoding="utf-8")
            os.chmod(tmp, mode)
            tmp.replace(path)


def _entries(root: Path, name: str) -> list[list[str]]:
    try:
        text = (root / "etc" / name).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    return [line.split(":") for line in text.splitlines() if line and not line.startswith("#")]
