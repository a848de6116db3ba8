"""`edge-gateway completion bash|zsh`: a shell completion script, generated from the parser."""

from __future__ import annotations

import argparse
from typing import Any

from gateway.cli import build_parser

_BASH = """# bash completion for edge-gateway (eval "$(edge-gateway completion bash)")
_edge_gateway() {{
    local cur prev cmd
    cur="${{COMP_WORDS[COMP_CWORD]}}"
    prev="${{COMP_WORDS[COMP_CWORD-1]}}"
    cmd="${{COMP_WORDS[1]}}"
    case "$prev" in
        -c|--config) COMPREPLY=( $(compgen -f -- "$cur") ); return ;;
    esac
    if [ "$COMP_CWORD" -eq 1 ]; then
        COMPREPLY=( $(compgen -W "{commands} {global_opts}" -- "$cur") ); return
    fi
    case "$cmd" in
{cases}
    esac
}}
complete -o filenames -F _edge_gateway edge-gateway
"""


def add_parser(sub: Any) -> None:
    p = sub.add_parser("completion", help="print a shell completion script (bash, or zsh via bashcompinit)")
    p.add_argument("shell", choices=["bash", "zsh"], nargs="?", default="bash")
    p.set_defaults(func="gateway.commands.completion:main")


def script(parser: argparse.ArgumentParser, shell: str = "bash") -> str:
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    commands = sorted(subparsers.choices)
    global_opts = sorted(o for a in parser._actions for o in a.option_strings)
    cases = []
    for name in commands:
        opts = sorted(o for a in subparsers.choices[name]._actions for o in a.option_strings)
        cases.append(f'        {name}) COMPREPLY=( $(compgen -W "{" ".join(opts)}" -- "$cur") ) ;;')
    text = _BASH.format(commands=" ".join(commands), global_opts=" ".join(global_opts),
                        cases="\n".join(cases))
    if shell == "zsh":
        text = "autoload -U +X bashcompinit && bashcompinit\n" + text
    return text


def main(args: argparse.Namespace) -> int:
    print(script(build_parser(), args.shell), end="")
    return 0
