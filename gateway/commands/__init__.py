"""One module per CLI command; each has `main(args) -> exit code`.

The commands are the top of the house: they load the config, wire the daemon
and plug the simulator in (`load_or_report` registers its `sim:` check).

This package and the modules whose parsers the CLI registers (scan, watch,
install, completion, test) import the standard library only at module level:
`edge-gateway install` runs with the system's python3 before pydantic, paho
and PyYAML exist (they go into the venv it makes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gateway.cli import DEFAULT_CONFIG

if TYPE_CHECKING:
    from gateway.config.model import Config
    from gateway.config.problems import Problem

#: What to do when the installed config cannot be read (it is root:edge-gateway 0640).
UNREADABLE_HINT = ("run as a member of group edge-gateway (sudo usermod -aG edge-gateway $USER, "
                   "then log in again) or with sudo")


def _validate_sim(driver: str, address: int, sim: dict[str, Any]) -> None:
    # Imported only when a config has a `sim:` block: a production process never loads
    # the simulator.
    from hardware_sim.i2c import validate_sim

    validate_sim(driver, address, sim)


def install_sim_validator() -> None:
    """Let the config check a `sim:` block (validating processes only)."""
    from gateway.config.sim import set_sim_validator

    set_sim_validator(_validate_sim)


def load_or_report(path: str, *, unreadable_hint: str = UNREADABLE_HINT,
                   deep: bool = False) -> Config | None:
    """The validated config, or None after printing one line per problem to stderr.

    `deep`: the checks beyond the schema that `run` needs too (start_checks). In the
    daemon (plain models) a child process does all of it
    (gateway.config.snapshot)."""
    # Here, not at the top: the config needs pydantic and PyYAML (see above).
    from gateway.config.problems import ConfigError
    from gateway.config.snapshot import load_checked
    from gateway.logs import print_error
    from gateway.service.checks import start_checks

    install_sim_validator()
    try:
        cfg, problems = load_checked(path, start_checks if deep else None)
    except ConfigError as exc:
        for problem in exc.problems:
            print_error(with_hint(problem, unreadable_hint))
        return None
    for line in problems:
        print_error(line)
    return None if problems else cfg


def with_hint(problem: Problem, unreadable_hint: str = UNREADABLE_HINT) -> str:
    """A file-level problem with what to do about it."""
    text = str(problem)
    if problem.path != "(file)":
        return text
    if "Permission denied" in problem.message:
        return f"{text}: {unreadable_hint}"
    if problem.message == "no such file" and problem.file == DEFAULT_CONFIG:
        return (f"{text} (the default config; pass -c FILE, or install the service with "
                "sudo make install, which writes it)")
    return text
