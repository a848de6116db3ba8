"""A GPIO output line (a relay) through libgpiod v2 (`gpiod` package, the `gpio` extra).

The request holds the line for as long as the gateway runs, so nothing else can
drive it meanwhile. `active_low` is the kernel's: the logical value ON drives the
line low (most relay boards switch on a low input). `get()` reads the line's value
back from the kernel, which is what the request last set (the best confirmation a
bare GPIO line offers; a relay's contacts are not wired back).
"""

from __future__ import annotations

from typing import Protocol


class OutputLine(Protocol):
    """What the control thread needs of an output line (libgpiod's, or the simulator's)."""

    def set(self, on: bool) -> None: ...

    def get(self) -> bool: ...

    def close(self) -> None: ...


class GpiodOutput:
    def __init__(self, chip: str, line: int | str, active_low: bool, initial: bool,
                 consumer: str = "edge-gateway") -> None:
        import gpiod
        from gpiod.line import Direction, Value

        path = chip if chip.startswith("/") else f"/dev/{chip}"
        settings = gpiod.LineSettings(
            direction=Direction.OUTPUT, active_low=active_low,
            output_value=Value.ACTIVE if initial else Value.INACTIVE,
        )
        self._request = gpiod.request_lines(path, config={line: settings}, consumer=consumer)
        self._line = line

    def set(self, on: bool) -> None:
        from gpiod.line import Value

        self._request.set_value(self._line, Value.ACTIVE if on else Value.INACTIVE)

    def get(self) -> bool:
        from gpiod.line import Value

        return bool(self._request.get_value(self._line) == Value.ACTIVE)

    def close(self) -> None:
        self._request.release()
