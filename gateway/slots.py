"""Record classes for the modules every daemon loads, without `dataclasses`.

`dataclasses` imports `inspect`, and with it `ast`, `dis` and `opcode`: 0.8 MiB of a
sensors-only daemon's RSS on a Pi Zero 2 W budget of 28 (docs/small-pi.md), for
nothing the daemon uses. So the records a daemon always loads are written out:
immutable ones as `typing.NamedTuple`, mutable ones as a subclass of `SlotsRecord`
with `__slots__` and an `__init__` of their own. `SlotsRecord` adds the two methods
`@dataclass` would have generated: `__repr__` and `__eq__` (field by field, same class
only), and, as a mutable dataclass is, it is unhashable.

Modules loaded only for a feature (serial protocols, inference, control, the status
page) may still use `dataclasses`; tests/test_daemon_imports.py checks that a
sensors-only daemon loads none of them.
"""

from __future__ import annotations

from typing import Any, ClassVar


class SlotsRecord:
    """`__repr__` and `__eq__` over `__slots__`, as `@dataclass` generates them."""

    __slots__ = ()
    __hash__: ClassVar[None] = None  # type: ignore[assignment]  # mutable: as dataclass(eq=True)
    #: Every slot of the class and its bases, base first.
    _field_names: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        names: list[str] = []
        for klass in reversed(cls.__mro__):
            slots = klass.__dict__.get("__slots__", ())
            names.extend((slots,) if isinstance(slots, str) else slots)
        cls._field_names = tuple(names)

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._field_names)
        return f"{type(self).__qualname__}({inner})"

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        # As tuples, like dataclasses: a value that is the same object is equal (NaN too).
        names = self._field_names
        return tuple(getattr(self, n) for n in names) == tuple(getattr(other, n) for n in names)
