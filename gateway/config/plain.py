"""The config models without pydantic: what the daemon runs on (issue 20, memory).

pydantic (its Rust core, its modules and the validators it builds) is 13 MiB of a
sensors-only daemon's 42 (benchmarks/bench_memory.py). Validation is needed once
per start and once per SIGHUP, never in between. So `edge-gateway run` validates
the file in a short-lived child process (`gateway.config.snapshot`), which hands
back the validated values, and the daemon builds the *same* model classes from
them with these stand-ins in place of pydantic's names (`gateway.config.schema`
picks one set or the other before the first model module loads).

A model here is a frozen record: the fields pydantic validated, as given; class
attributes, properties and methods as written. Nothing is validated: the values
come from the validating child. What the daemon uses of pydantic's model API is
here with the same meaning: `model_fields[name].default`, `model_copy(update=)`,
equality by class and values, hashing, `repr`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

_MISSING: Any = object()


class FieldInfo:
    """`Field(...)`: only its default is kept (the constraints were checked in the child)."""

    __slots__ = ("default", "default_factory")

    def __init__(self, default: Any = _MISSING, *, default_factory: Callable[[], Any] | None = None,
                 **_constraints: Any) -> None:
        self.default = default
        self.default_factory = default_factory

    def value(self) -> Any:
        if self.default_factory is not None:
            return self.default_factory()
        return None if self.default is _MISSING else self.default


def Field(default: Any = _MISSING, **kwargs: Any) -> Any:
    return FieldInfo(default, **kwargs)


def ConfigDict(**kwargs: Any) -> dict[str, Any]:
    return dict(kwargs)


class BeforeValidator:
    """`Annotated` metadata; validation happened in the child."""

    def __init__(self, func: Callable[..., Any], **_kwargs: Any) -> None:
        self.func = func


class AfterValidator(BeforeValidator):
    pass


class ValidationInfo:
    """Only ever an annotation of a validator (validators do not run here)."""


def field_validator(*_fields: str, **_kwargs: Any) -> Callable[[Any], Any]:
    return _unchanged


def model_validator(**_kwargs: Any) -> Callable[[Any], Any]:
    return _unchanged


def _unchanged(func: Any) -> Any:
    return func


def _own_annotations(klass: type) -> dict[str, Any]:
    notes = vars(klass).get("__annotations__")
    if notes is None and "__annotate__" in vars(klass):  # Python 3.14 (PEP 649)
        import inspect

        notes = inspect.get_annotations(klass)
    return dict(notes or {})


class BaseModel:
    """A frozen record of already validated fields (see the module's docstring)."""

    model_config: ClassVar[dict[str, Any]] = {}
    model_fields: ClassVar[dict[str, FieldInfo]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        fields: dict[str, FieldInfo] = {}
        for klass in reversed(cls.__mro__):
            for name, note in _own_annotations(klass).items():
                if name.startswith("_") or name in ("model_config", "model_fields") or \
                        str(note).startswith(("ClassVar", "typing.ClassVar")):
                    continue
                default = vars(klass).get(name, _MISSING)
                fields[name] = default if isinstance(default, FieldInfo) else FieldInfo(default)
        cls.model_fields = fields

    def __init__(self, **values: Any) -> None:
        fields = type(self).model_fields
        unknown = set(values) - set(fields)
        if unknown:
            raise TypeError(f"{type(self).__name__}: no field {', '.join(sorted(unknown))}")
        for name, info in fields.items():
            object.__setattr__(self, name, values[name] if name in values else info.value())

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is frozen: {name} cannot be set")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is frozen: {name} cannot be deleted")

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in type(self).model_fields)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, BaseModel)
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash((type(self), self._values()))

    def __repr__(self) -> str:
        inner = ", ".join(f"{n}={getattr(self, n)!r}" for n in type(self).model_fields)
        return f"{type(self).__name__}({inner})"

    def model_copy(self, *, update: dict[str, Any] | None = None) -> Any:
        values = {name: getattr(self, name) for name in type(self).model_fields}
        values.update(update or {})
        return type(self)(**values)
