"""A faster constructor for the core's frozen dataclasses.

A frozen dataclass's generated `__init__` sets every field through `object.__setattr__`, which
costs about three times as much as filling the instance dict. The core builds several such
values for every decision (payloads, envelopes, task states), so `fast_init` swaps in an
`__init__` with the same signature and defaults that fills `__dict__` in field order. Equality,
hashing, `repr`, `dataclasses.replace` and freezing are unchanged. `replace` and `updated`
copy such a value with some fields changed the same way, without `dataclasses.replace`'s
per-field walk and keyword call (a few µs each: a tenth of an agent's CPU went to it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, Final, TypeVar

T = TypeVar("T")

_FACTORY = object()  # stands in for a field whose default comes from a factory


def fast_init(cls: type[T]) -> type[T]:
    """Replace the `__init__` of a plain frozen dataclass (no `__post_init__`, no slots, no
    keyword-only or init=False fields) by one that writes the instance dict directly."""
    if not dataclasses.is_dataclass(cls) or hasattr(cls, "__post_init__"):
        raise TypeError(f"fast_init needs a dataclass without __post_init__, got {cls!r}")
    if "__slots__" in cls.__dict__:
        raise TypeError(f"fast_init needs instance dicts; {cls.__name__} uses __slots__")
    params: list[str] = []
    body: list[str] = []
    namespace: dict[str, Any] = {"_FACTORY": _FACTORY}
    for item in dataclasses.fields(cls):
        name = item.name
        if not item.init or item.kw_only:
            raise TypeError(f"fast_init cannot build {cls.__name__}.{name} (kw_only or init=False)")
        if item.default is not dataclasses.MISSING:
            namespace[f"_default_{name}"] = item.default
            params.append(f"{name}=_default_{name}")
        elif item.default_factory is not dataclasses.MISSING:
            namespace[f"_factory_{name}"] = item.default_factory
            params.append(f"{name}=_FACTORY")
            body.append(f"    if {name} is _FACTORY:\n        {name} = _factory_{name}()")
        else:
            params.append(name)
        body.append(f"    fields[{name!r}] = {name}")
    source = (
        f"def __init__(self, {', '.join(params)}):\n    fields = self.__dict__\n"
        + "\n".join(body)
        + "\n"
    )
    exec(source, namespace)  # generated from the field names above, as dataclasses does
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    init.__doc__ = "Fill the instance dict in field order (see sdlcflow.core.records)."
    cls.__init__ = init  # type: ignore[method-assign]
    return cls


# Final: the compiled core reads them from C statics, not the module dict, at every build
_new: Final = object.__new__
_set: Final = object.__setattr__


def updated(obj: T, changes: Mapping[str, Any]) -> T:
    """A copy of a plain frozen dataclass with some fields changed (the instance dict copied)."""
    fields: dict[str, Any] = obj.__dict__.copy()  # a copy of the whole table, then the changes
    fields.update(changes)
    return build(type(obj), fields)


def _constructor_in_c() -> Callable[[type[Any], dict[str, Any]], Any] | None:
    """The compiled core's `build` written in C (sdlcflow/core/_records.c), or None in the pure
    core, where sdlcflow.compiled_core does not serve it."""
    try:
        from sdlcflow.core import _records
    except ImportError:
        return None
    return _records.build


_build_in_c: Final = _constructor_in_c()


def build(cls: type[T], fields: dict[str, Any]) -> T:
    """An instance of a plain frozen dataclass from the dict of all its fields in field order,
    without calling `__init__`: in the compiled core this skips the interpreted constructor
    (the decider builds an envelope and an event for every decision), and runs in C."""
    if _build_in_c is not None:
        built: T = _build_in_c(cls, fields)
        return built
    new = _new(cls)
    _set(new, "__dict__", fields)
    return new


def replace(obj: T, **changes: Any) -> T:
    """A fast `dataclasses.replace` for plain frozen dataclasses (no __post_init__, no slots);
    like it, it refuses a name that is not a field."""
    fields = type(obj).__dataclass_fields__  # type: ignore[attr-defined]
    if not fields.keys() >= changes.keys():
        unknown = ", ".join(sorted(changes.keys() - fields.keys()))
        raise TypeError(f"{type(obj).__name__} has no field {unknown}")
    return updated(obj, changes)
