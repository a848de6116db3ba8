"""`edge-gateway install` / `uninstall` into a temporary root.

Real, and unprivileged: the account files of the temp root edited in place (what
--root does instead of groupadd/useradd, which need root), `python -m venv`, file
copies and `systemctl --root=DIR enable/disable` (offline: the wants/ symlink).
Mocked: only `pip install` of the project into the new venv (it would download the
dependencies from PyPI), the shadow-utils commands for the live system (recorded,
not run), and, for one test, the user id.
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
from pytest_mock import MockerFixture

from gateway.cli import main as cli
from gateway.commands import install
from tests.support import REPO

#: A Debian-like target: dialout and video exist (with a member), i2c and gpio do not, and
#: system ids 999 and 998 are taken, so the installer must pick free ones.
ACCOUNTS = {
    "passwd": ["root:x:0:0:root:/root:/bin/bash",
               "systemd-network:x:998:998:systemd Network Management:/:/usr/sbin/nologin",
               "messagebus:x:999:999::/nonexistent:/usr/sbin/nologin",
               "pi:x:1000:1000:,,,:/home/pi:/bin/bash"],
    "group": ["root:x:0:", "dialout:x:20:pi", "video:x:44:pi", "systemd-network:x:998:",
              "messagebus:x:999:", "pi:x:1000:"],
    "shadow": ["root:*:19000:0:99999:7:::", "pi:$y$j9T$hash:19000:0:99999:7:::"],
    "gshadow": ["root:*::", "dialout:*::pi", "video:*::pi", "pi:!::"],
}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A target root with its own account files (never this machine's /etc/shadow)."""
    r = tmp_path / "root"
    (r / "etc").mkdir(parents=True)
    for name, lines in ACCOUNTS.items():
        (r / "etc" / name).write_text("\n".join(lines) + "\n")
        os.chmod(r / "etc" / name, 0o644 if name in ("passwd", "group") else 0o640)
    return r


@pytest.fixture
def commands(mocker: MockerFixture) -> list[list[str]]:
    """Every command the installer runs; all run for real except `pip install`."""
    ran: list[list[str]] = []
    real_run = install.run

    def fake(cmd: Sequence[str]) -> None:
        ran.append([str(c) for c in cmd])
        if cmd[1:4] == ["-m", "pip", "install"]:
            return
        assert cmd[0] not in SHADOW_UTILS, f"--root must not run {cmd[0]}"
        real_run(cmd)

    mocker.patch.object(install, "run", side_effect=fake)
    return ran


SHADOW_UTILS = ("groupadd", "useradd", "usermod", "userdel", "groupdel")


def entries(root: Path, name: str) -> dict[str, list[str]]:
    out = {}
    for line in (root / "etc" / name).read_text().splitlines():
        if line:
            parts = line.split(":")
            out[parts[0]] = parts
    return out


def members(root: Path, group: str) -> set[str]:
    return {m for m in entries(root, "group")[group][3].split(",") if m}


def run_cli(*args: str) -> int:
    return cli(list(args))


def test_install_is_complete_and_idempotent(root: Path, commands: list[list[str]],
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli("install", "--root", str(root), "--python", sys.executable) == 0
    out = capsys.readouterr().out

    # Groups: the missing ones created; the user in all four device groups.
    groups = entries(root, "group")
    for g in ("i2c", "dialout", "video", "gpio"):
        assert "edge-gateway" in members(root, g), g
    assert members(root, "dialout") == {"pi", "edge-gateway"}  # existing members kept
    assert "edge-gateway" in groups
    user = entries(root, "passwd")["edge-gateway"]
    assert user[5] == "/var/lib/edge-gateway" and user[6] == "/usr/sbin/nologin"
    assert int(user[2]) < 1000 and int(user[2]) not in (998, 999)  # a free system id
    gids = [int(g[2]) for g in groups.values()]
    assert len(gids) == len(set(gids))  # new groups got free ids
    assert int(user[3]) == int(groups["edge-gateway"][2])
    assert entries(root, "shadow")["edge-gateway"][1] == "!*"  # no password, locked
    assert "edge-gateway" in entries(root, "gshadow")["gpio"][3].split(",")
    assert entries(root, "passwd")["pi"] == ACCOUNTS["passwd"][3].split(":")  # untouched
    # `edge-gateway` on PATH: a symlink to the venv's command.
    link = root / "usr/local/bin/edge-gateway"
    assert os.readlink(link) == "/opt/edge-gateway/venv/bin/edge-gateway"
    assert not (root / "var/lib/edge-gateway").exists()  # systemd's StateDirectory= makes it
    # The venv exists and pip was asked to install this checkout into it.
    vpy = root / "opt/edge-gateway/venv/bin/python"
    assert vpy.exists()
    assert "include-system-site-packages = true" in (vpy.parent.parent / "pyvenv.cfg").read_text()
    assert [str(vpy), "-m", "pip", "install", "--upgrade", "--quiet", str(REPO)] in commands
    # Config: the example, readable by root and the service group only.
    cfg = root / "etc/edge-gateway/config.yaml"
    assert cfg.read_text() == (REPO / "config/example-pi.yaml").read_text()
    st = cfg.stat()
    assert stat.S_IMODE(st.st_mode) == 0o640
    if os.geteuid() == 0:
        assert st.st_uid == 0 and st.st_gid == int(groups["edge-gateway"][2])
    else:  # only root can give files away: it says what the deployer must do
        assert st.st_uid == os.geteuid()
        assert f"not root: {cfg} stays owned by uid {os.geteuid()}" in out
    assert stat.S_IMODE((root / "etc/edge-gateway").stat().st_mode) == 0o750
    # The unit, enabled (offline systemctl --root).
    unit = root / "etc/systemd/system/edge-gateway.service"
    assert unit.read_bytes() == (REPO / "systemd/edge-gateway.service").read_bytes()
    wants = root / "etc/systemd/system/multi-user.target.wants/edge-gateway.service"
    assert wants.is_symlink()
    assert os.readlink(wants) == "/etc/systemd/system/edge-gateway.service"
    # Paths printed are the ones written, under the root.
    assert f"wrote {cfg}:" in out and f"installed {unit}" in out
    assert f"done: staged under {root}" in out

    # Second run: nothing is created again; the edited config is kept.
    cfg.write_text(cfg.read_text() + "# edited by the operator\n")
    passwd_before = (root / "etc/passwd").read_text()
    group_before = (root / "etc/group").read_text()
    commands.clear()
    assert run_cli("install", "--root", str(root), "--python", sys.executable) == 0
    out = capsys.readouterr().out
    assert not any(c[1:3] == ["-m", "venv"] for c in commands)
    assert cfg.read_text().endswith("# edited by the operator\n")
    assert (root / "etc/passwd").read_text() == passwd_before
    assert (root / "etc/group").read_text() == group_before
    assert f"{cfg} exists; left as it is" in out and f"{unit} is up to date" in out
    assert "user edge-gateway exists" in out


def test_install_into_an_empty_directory(tmp_path: Path, commands: list[list[str]],
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """Staging an image from nothing: the account files are created."""
    root = tmp_path / "empty"
    root.mkdir()
    assert run_cli("install", "--root", str(root), "--python", sys.executable,
                   "--no-systemctl") == 0
    out = capsys.readouterr().out
    assert set(entries(root, "group")) == {"i2c", "dialout", "video", "gpio", "edge-gateway"}
    assert list(entries(root, "passwd")) == ["edge-gateway"]
    assert stat.S_IMODE((root / "etc/passwd").stat().st_mode) == 0o644
    assert not (root / "etc/shadow").exists()  # not invented when the target has none
    assert f"{root}/etc/group" in out and "cannot lock" not in out


def test_existing_user_gets_missing_groups(root: Path, commands: list[list[str]]) -> None:
    assert run_cli("install", "--root", str(root), "--python", sys.executable,
                   "--no-systemctl") == 0
    # Someone removed the user from gpio: the next install puts it back.
    group = root / "etc/group"
    group.write_text("\n".join(
        ln.replace(":edge-gateway", ":") if ln.startswith("gpio:") else ln
        for ln in group.read_text().splitlines()) + "\n")
    assert "edge-gateway" not in members(root, "gpio")
    commands.clear()
    assert run_cli("install", "--root", str(root), "--python", sys.executable,
                   "--no-systemctl") == 0
    assert "edge-gateway" in members(root, "gpio")
    assert not any(c[0] == "systemctl" for c in commands)


def test_live_system_uses_shadow_utils(mocker: MockerFixture) -> None:
    """On / the installer runs groupadd/useradd (recorded here, not run): NSS, locks and
    nscd belong to them. Lookups are pinned to a system without any of the accounts."""
    ran: list[list[str]] = []
    mocker.patch.object(install, "run", side_effect=lambda cmd: ran.append(list(cmd)))
    mocker.patch.object(install.Accounts, "group", return_value=None)
    mocker.patch.object(install.Accounts, "user", return_value=None)
    install.ensure_account(install.Accounts(Path("/")))
    assert ran == [
        *(["groupadd", "--system", g] for g in ("i2c", "dialout", "video", "gpio")),
        ["useradd", "--system", "--user-group", "--groups", "i2c,dialout,video,gpio",
         "--home-dir", "/var/lib/edge-gateway", "--no-create-home", "--shell",
         "/usr/sbin/nologin", "--comment", "edge-gateway daemon", "edge-gateway"],
    ]


def test_uninstall_keeps_data_and_config(root: Path, commands: list[list[str]]) -> None:
    assert run_cli("install", "--root", str(root), "--python", sys.executable) == 0
    data = root / "var/lib/edge-gateway"
    data.mkdir(parents=True)
    (data / "spool.db").write_bytes(b"SQLite format 3\0")
    assert run_cli("uninstall", "--root", str(root)) == 0
    assert not (root / "etc/systemd/system/edge-gateway.service").exists()
    assert not (root / "etc/systemd/system/multi-user.target.wants/edge-gateway.service").exists()
    assert not (root / "opt/edge-gateway").exists()
    assert "edge-gateway" not in entries(root, "passwd")
    assert "edge-gateway" not in entries(root, "group")
    assert "edge-gateway" not in entries(root, "shadow")
    # The device groups this install created are gone; those the system had stay and
    # lose only this member.
    assert "i2c" not in entries(root, "group") and "gpio" not in entries(root, "group")
    assert "i2c" not in entries(root, "gshadow")
    assert members(root, "dialout") == {"pi"} and members(root, "video") == {"pi"}
    assert not (root / "usr/local/bin/edge-gateway").is_symlink()
    assert (data / "spool.db").read_bytes() == b"SQLite format 3\0"
    assert (root / "etc/edge-gateway/config.yaml").exists()
    # Uninstalling twice is fine.
    assert run_cli("uninstall", "--root", str(root)) == 0


def test_needs_root_for_the_real_system(mocker: MockerFixture,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    mocker.patch("os.geteuid", return_value=1000)
    run = mocker.patch.object(install, "run")
    assert run_cli("install") == 1
    assert "must run as root" in capsys.readouterr().err
    run.assert_not_called()


def test_minimal_config_when_no_example(root: Path, commands: list[list[str]],
                                        tmp_path: Path, mocker: MockerFixture) -> None:
    # A source tree without config/example-pi.yaml (e.g. a wheel next to the unit).
    src = tmp_path / "src"
    (src / "systemd").mkdir(parents=True)
    shutil.copy(REPO / "systemd/edge-gateway.service", src / "systemd")
    wheel = src / "edge_gateway-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"")
    mocker.patch.object(install, "CHECKOUT", tmp_path / "nowhere")
    assert run_cli("install", "--root", str(root), "--python", sys.executable,
                   "--source", str(wheel), "--no-systemctl") == 0
    text = (root / "etc/edge-gateway/config.yaml").read_text()
    assert text == install.MINIMAL_CONFIG
    from gateway.config import parse_config

    assert parse_config(text).gateway.id == "raspberrypi"  # valid as shipped
    assert any(c[-1] == str(wheel) and "pip" in c for c in commands)


def test_install_runs_before_dependencies_exist() -> None:
    """`make install` runs with the system's python3, before pydantic/paho/yaml are
    installed (they go into the venv): the install command needs the stdlib only."""
    import subprocess

    code = (
        "import sys\n"
        "for m in ('pydantic', 'paho', 'yaml', 'serial', 'smbus2', 'numpy'):\n"
        "    sys.modules[m] = None  # any import of them raises ImportError\n"
        "from gateway.cli import build_parser\n"
        "args = build_parser().parse_args(['install', '--root', '/x', '--no-systemctl'])\n"
        "print(args.func, args.root, args.no_systemctl)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["gateway.commands.install:main", "/x", "True"]
