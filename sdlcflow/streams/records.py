"""Conversion between the core's frozen dataclasses and the plain dicts fastavro reads and writes.

Driven by type hints and compiled once per class: the first conversion of a class generates a
small function (as `dataclasses` itself does) so that the hot path is one dict display or one
constructor call, with no per-field type inspection. Supported: str, int, float, bool, bytes,
enums, nested dataclasses, `X | None`, `tuple[X, ...]` and `dict[str, X]`.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from sdlcflow.errors import SdlcflowError

T = TypeVar("T")
Convert = Callable[[Any], Any]
_SCALARS = (str, int, float, bool, bytes)


class RecordTypeError(SdlcflowError):
    """A dataclass field has a type the Avro mapping does not support, or data does not fit."""


def to_avro(obj: Any) -> dict[str, Any]:
    """The Avro datum (a dict) of a dataclass instance."""
    return record_encoder(type(obj))(obj)  # type: ignore[no-any-return]


def from_avro(cls: type[T], datum: dict[str, Any]) -> T:
    """The dataclass instance of `cls` holding `datum`; raise RecordTypeError if it does not fit."""
    try:
        return record_decoder(cls)(datum)  # type: ignore[no-any-return]
    except (KeyError, ValueError, TypeError) as exc:
        raise RecordTypeError(
            f"{cls.__name__} cannot hold this record: {type(exc).__name__}: {exc}"
        ) from exc


def optional_inner(hint: Any) -> Any | None:
    """For `X | None` return X; for anything else None."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1 and len(args) == 2:
            return rest[0]
    return None


@functools.cache
def field_hints(cls: type) -> dict[str, Any]:
    """Resolved type hints of a dataclass's fields, in field order."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


_RECORD_ENCODERS: dict[type, Convert] = {}
_RECORD_DECODERS: dict[type, Convert] = {}


def record_encoder(cls: type) -> Convert:
    """The compiled dataclass -> dict function of `cls` (compiled once, then cached)."""
    convert = _RECORD_ENCODERS.get(cls)
    if convert is None:
        _require_dataclass(cls)
        convert = _RECORD_ENCODERS[cls] = _compile_encoder(cls)
    return convert


def record_decoder(cls: type) -> Convert:
    """The compiled dict -> dataclass function of `cls` (compiled once, then cached)."""
    convert = _RECORD_DECODERS.get(cls)
    if convert is None:
        _require_dataclass(cls)
        convert = _RECORD_DECODERS[cls] = _compile_decoder(cls)
    return convert


def _require_dataclass(cls: type) -> None:
    if not (dataclasses.is_dataclass(cls) and isinstance(cls, type)):
        raise RecordTypeError(f"{cls!r} is not a dataclass; only dataclasses map to Avro records")


@functools.cache
def encoder_for(hint: Any) -> Convert | None:
    """A function turning a value of `hint` into its Avro datum; None when it is the identity."""
    inner = optional_inner(hint)
    if inner is not None:
        convert = encoder_for(inner)
        return None if convert is None else (lambda v: None if v is None else convert(v))
    origin = typing.get_origin(hint)
    if origin is tuple:
        item = encoder_for(_tuple_item(hint))
        return None if item is None else (lambda v: [item(x) for x in v])
    if origin in (dict, Mapping):
        value = encoder_for(typing.get_args(hint)[1])
        return None if value is None else (lambda v: {k: value(x) for k, x in v.items()})
    if hint in _SCALARS:
        return None
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        # str-valued enums are str instances that fastavro writes as their symbol as they are
        return None if issubclass(hint, str) else (lambda v: v.value)
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return record_encoder(hint)
    raise RecordTypeError(f"no Avro mapping for {hint!r}; use str, int, float, bool, bytes, ...")


@functools.cache
def decoder_for(hint: Any) -> Convert | None:
    """A function turning an Avro datum into a value of `hint`; None when it is the identity."""
    inner = optional_inner(hint)
    if inner is not None:
        convert = decoder_for(inner)
        return None if convert is None else (lambda v: None if v is None else convert(v))
    origin = typing.get_origin(hint)
    if origin is tuple:
        item = decoder_for(_tuple_item(hint))
        return tuple if item is None else (lambda v: tuple([item(x) for x in v]))
    if origin in (dict, Mapping):
        value = decoder_for(typing.get_args(hint)[1])
        return None if value is None else (lambda v: {k: value(x) for k, x in v.items()})
    if hint in _SCALARS:
        return None
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        members = {m.value: m for m in hint}
        return members.__getitem__
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return record_decoder(hint)
    raise RecordTypeError(f"no Avro mapping for {hint!r}; use str, int, float, bool, bytes, ...")


def _tuple_item(hint: Any) -> Any:
    args = typing.get_args(hint)
    if len(args) != 2 or args[1] is not Ellipsis:
        raise RecordTypeError(f"{hint!r}: only homogeneous tuples (tuple[X, ...]) map to Avro")
    return args[0]


def _compile_encoder(cls: type) -> Convert:
    """def encode(obj): return {"a": obj.a, "b": _b(obj.b), ...}"""
    namespace: dict[str, Any] = {}
    items = []
    for name, hint in field_hints(cls).items():
        convert = encoder_for(hint)
        if convert is None:
            items.append(f"{name!r}: obj.{name}")
        else:
            namespace[f"_{name}"] = convert
            items.append(f"{name!r}: _{name}(obj.{name})")
    source = "def encode(obj):\n    return {" + ", ".join(items) + "}\n"
    exec(source, namespace)
    return namespace["encode"]  # type: ignore[no-any-return]


def _compile_decoder(cls: type) -> Convert:
    """def decode(d): return cls(d["a"], _b(d["b"]), ...)"""
    namespace: dict[str, Any] = {"cls": cls}
    args = []
    for name, hint in field_hints(cls).items():
        convert = decoder_for(hint)
        if convert is None:
            args.append(f"d[{name!r}]")
        else:
            namespace[f"_{name}"] = convert
            args.append(f"_{name}(d[{name!r}])")
    source = "def decode(d):\n    return cls(" + ", ".join(args) + ")\n"
    exec(source, namespace)
    return namespace["decode"]  # type: ignore[no-any-return]
