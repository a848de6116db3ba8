"""`uninstall` removes what `install` created and hands back what it keeps.

Into a temporary root, like tests/test_install.py (real account-file edits, real venv,
offline systemctl; only pip is not run). tools/systemd_container_test.sh does the same
on a booted system and checks that nothing is left owned by a deleted uid/gid.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from gateway.commands.install_record import hand_back, read_record, write_record
from tests.test_install import commands, entries, root, run_cli

__all__ = ["commands", "root"]  # fixtures used below


def test_install_records_only_what_it_created(root: Path, commands: list[list[str]]) -> None:
    assert run_cli("install", "--root", str(root), "--python", sys.executable,
                   "--no-systemctl") == 0
    record = json.loads((root / "opt/edge-gateway/install.json").read_text())
    # The fixture's root lacks i2c, gpio and the service's own group; dialout and
    # video came with the system.
    assert record == {"groups": ["edge-gateway", "gpio", "i2c"], "users": ["edge-gateway"]}
    # Installing again (an upgrade) creates nothing and forgets nothing.
    assert run_cli("install", "--root", str(root), "--python", sys.executable,
                   "--no-systemctl") == 0
    assert json.loads((root / "opt/edge-gateway/install.json").read_text()) == record


def test_uninstall_removes_created_groups_and_keeps_data(root: Path,
                                                         commands: list[list[str]],
                                                         capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    assert run_cli("install", "--root", str(root), "--python", sys.executable,
                   "--no-systemctl") == 0
    data = root / "var/lib/edge-gateway"
    data.mkdir(parents=True)
    (data / "spool.db").write_bytes(b"SQLite format 3\0")
    capsys.readouterr()
    assert run_cli("uninstall", "--root", str(root), "--no-systemctl") == 0
    out = capsys.readouterr().out
    groups = entries(root, "group")
    assert not {"edge-gateway", "i2c", "gpio"} & set(groups)
    assert {"dialout", "video"} <= set(groups)
    assert "edge-gateway" not in groups["dialout"][3].split(",")
    assert "edge-gateway" not in entries(root, "passwd")
    assert "removed group i2c (created by install)" in out
    assert (data / "spool.db").exists() and (root / "etc/edge-gateway/config.yaml").exists()
    assert "uninstall --purge" in out

    assert run_cli("uninstall", "--root", str(root), "--no-systemctl", "--purge") == 0
    assert not data.exists() and not (root / "etc/edge-gateway").exists()


def test_a_created_group_someone_joined_since_is_kept(root: Path, commands: list[list[str]],
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli("install", "--root", str(root), "--python", sys.executable,
                   "--no-systemctl") == 0
    group = root / "etc/group"
    group.write_text("".join(
        (line + ",pi" if line.startswith("gpio:") else line) + "\n"
        for line in group.read_text().splitlines()))
    assert run_cli("uninstall", "--root", str(root), "--no-systemctl") == 0
    assert "kept group gpio: it has other members now (pi)" in capsys.readouterr().out
    assert entries(root, "group")["gpio"][3] == "pi"
    assert "i2c" not in entries(root, "group")


def test_without_a_record_only_the_user_goes(root: Path, commands: list[list[str]]) -> None:
    """An install from before the record: its groups cannot be told from the system's."""
    assert run_cli("install", "--root", str(root), "--python", sys.executable,
                   "--no-systemctl") == 0
    (root / "opt/edge-gateway/install.json").unlink()
    assert run_cli("uninstall", "--root", str(root), "--no-systemctl") == 0
    groups = entries(root, "group")
    assert "edge-gateway" not in entries(root, "passwd") and "edge-gateway" not in groups
    assert {"i2c", "gpio"} <= set(groups)


def test_record_is_a_union_and_tolerates_garbage(tmp_path: Path) -> None:
    assert read_record(tmp_path) == {"groups": [], "users": []}
    write_record(tmp_path, ["i2c"], ["edge-gateway"])
    write_record(tmp_path, ["gpio"], [])
    assert read_record(tmp_path) == {"groups": ["gpio", "i2c"], "users": ["edge-gateway"]}
    (tmp_path / "install.json").write_text("{not json")
    assert read_record(tmp_path) == {"groups": [], "users": []}


def test_hand_back_picks_exactly_the_files_of_deleted_ids(tmp_path: Path) -> None:
    etc, state = tmp_path / "etc", tmp_path / "state"
    (etc / "sub").mkdir(parents=True)
    state.mkdir()
    for f in (etc / "config.yaml", etc / "sub" / "secret", state / "spool.db"):
        f.write_text("x")
    me, my_group = os.getuid(), os.getgid()
    calls: list[tuple[Path, int, int]] = []
    # The current user stands in for the deleted account (only root may chown to root).
    changed = hand_back([etc, state, tmp_path / "absent"], {me}, set(),
                        chown=lambda p, u, g: calls.append((p, u, g)))
    assert sorted(changed) == sorted([etc, etc / "sub", etc / "config.yaml",
                                      etc / "sub" / "secret", state, state / "spool.db"])
    assert {(u, g) for _, u, g in calls} == {(0, -1)}
    calls.clear()
    hand_back([etc], set(), {my_group}, chown=lambda p, u, g: calls.append((p, u, g)))
    assert {(u, g) for _, u, g in calls} == {(-1, 0)} and len(calls) == 4
    calls.clear()
    assert hand_back([etc], {me + 12345}, {my_group + 12345},
                     chown=lambda p, u, g: calls.append((p, u, g))) == []
    assert calls == []


def test_hand_back_without_root_says_what_is_left(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "config.yaml").write_text("x")

    def refuse(path: Path, uid: int, gid: int) -> None:
        raise PermissionError(1, "Operation not permitted", str(path))

    assert hand_back([tmp_path], {os.getuid()}, set(), chown=refuse) == []
    out = capsys.readouterr().out
    assert f"not root: {tmp_path / 'config.yaml'} keeps uid {os.getuid()}" in out
