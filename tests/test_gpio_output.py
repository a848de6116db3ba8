"""GpiodOutput against a stand-in for libgpiod v2's Python API (no GPIO chip on CI).

The stand-in checks the calls have the shapes gpiod 2.x takes (request_lines(path,
config={line: LineSettings}, consumer=...), set_value/get_value with Value) and keeps the
line's logical value, as the kernel does for an output request.
"""

from __future__ import annotations

import enum
import sys
import types
from dataclasses import dataclass
from typing import Any

import pytest

from gateway.drivers.gpio_output import GpiodOutput


class Direction(enum.Enum):
    INPUT = 1
    OUTPUT = 2


class Value(enum.Enum):
    INACTIVE = 0
    ACTIVE = 1


@dataclass
class LineSettings:
    direction: Direction = Direction.INPUT
    active_low: bool = False
    output_value: Value = Value.INACTIVE


class Request:
    def __init__(self, path: str, config: dict[Any, LineSettings], consumer: str) -> None:
        self.path, self.config, self.consumer = path, config, consumer
        self.values = {k: s.output_value for k, s in config.items()}
        self.released = False

    def set_value(self, line: Any, value: Value) -> None:
        assert isinstance(value, Value) and line in self.values
        self.values[line] = value

    def get_value(self, line: Any) -> Value:
        return self.values[line]

    def release(self) -> None:
        self.released = True


@pytest.fixture
def requests(monkeypatch: pytest.MonkeyPatch) -> list[Request]:
    made: list[Request] = []

    def request_lines(path: str, *, config: dict[Any, LineSettings], consumer: str) -> Request:
        r = Request(path, config, consumer)
        made.append(r)
        return r

    gpiod = types.ModuleType("gpiod")
    line = types.ModuleType("gpiod.line")
    gpiod.LineSettings = LineSettings  # type: ignore[attr-defined]
    gpiod.request_lines = request_lines  # type: ignore[attr-defined]
    line.Direction = Direction  # type: ignore[attr-defined]
    line.Value = Value  # type: ignore[attr-defined]
    gpiod.line = line  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "gpiod", gpiod)
    monkeypatch.setitem(sys.modules, "gpiod.line", line)
    return made


def test_an_output_request_starts_at_its_initial_state_and_reads_back(requests: list[Request]
                                                                      ) -> None:
    out = GpiodOutput("gpiochip0", 17, active_low=True, initial=False)
    (req,) = requests
    assert req.path == "/dev/gpiochip0" and req.consumer == "edge-gateway"
    settings = req.config[17]
    assert settings.direction is Direction.OUTPUT and settings.active_low is True
    assert settings.output_value is Value.INACTIVE and out.get() is False
    out.set(True)
    assert req.values[17] is Value.ACTIVE and out.get() is True
    out.close()
    assert req.released


def test_a_named_line_on_a_chip_path(requests: list[Request]) -> None:
    out = GpiodOutput("/dev/gpiochip4", "GPIO27", active_low=False, initial=True)
    (req,) = requests
    assert req.path == "/dev/gpiochip4" and req.config["GPIO27"].output_value is Value.ACTIVE
    assert out.get() is True
