"""Shell completion: generated from the real parser and accepted by bash."""

from __future__ import annotations

import shutil
import subprocess

from gateway.cli import build_parser
from gateway.commands.completion import script


def test_completion_lists_every_command_and_its_options() -> None:
    text = script(build_parser())
    for command in ("run", "check", "scan", "watch", "reload", "version", "install", "completion"):
        assert f"        {command}) COMPREPLY" in text
    assert "--config" in text and "--log-level" in text


def test_bash_completes_commands_and_config_files(tmp_path: object) -> None:
    bash = shutil.which("bash")
    assert bash is not None
    probe = script(build_parser()) + (
        'COMP_WORDS=(edge-gateway ch); COMP_CWORD=1; _edge_gateway; echo "${COMPREPLY[@]}"\n'
        'COMP_WORDS=(edge-gateway run --); COMP_CWORD=2; _edge_gateway; echo "${COMPREPLY[@]}"\n'
    )
    out = subprocess.run([bash, "-c", probe], capture_output=True, text=True, check=True).stdout
    first, second = out.splitlines()
    assert first.split() == ["check"]
    assert "--config" in second.split()
