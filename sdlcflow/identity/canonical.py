"""Canonical JSON: the one byte encoding that every signer and verifier hashes.

Console, CLI, agents and coordinator must produce the same bytes for the same value, or a valid
signature would fail to verify. The rules (a pragmatic subset of RFC 8785):

- object keys sorted by code point, no insignificant whitespace, UTF-8, non-ASCII kept as is;
- integers as decimal; floats only if finite, written by Python's shortest repr;
- tuples are arrays, sets are rejected (their order is not defined), NaN/Infinity rejected;
- pydantic models and dataclasses are dumped to plain JSON values first.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import types
import typing
from collections.abc import Callable, Mapping
from enum import Enum
from typing import Any

import orjson

from sdlcflow.errors import SdlcflowError

DIGEST_PREFIX = "sha256:"


class CanonicalJsonError(SdlcflowError):
    """A value cannot be encoded canonically (a set, a non-finite float, a foreign object)."""


def to_plain(value: Any) -> Any:
    """Turn models, dataclasses, enums and tuples into plain JSON values, rejecting the rest."""
    convert = _CONVERTERS.get(type(value))
    if convert is None:
        convert = _converter_for(type(value))
    return convert(value)


Converter = Callable[[Any], Any]


def _same(value: Any) -> Any:
    return value


def _float(value: float) -> float:
    if not math.isfinite(value):
        raise CanonicalJsonError(f"{value!r} has no JSON form; use a finite number or a string")
    return value


def _mapping(value: Mapping[Any, Any]) -> dict[str, Any]:
    return {
        (k if type(k) is str else _key(k)): (v if type(v) in _PLAIN_AS_IS else to_plain(v))
        for k, v in value.items()
    }


def _sequence(value: list[Any] | tuple[Any, ...]) -> list[Any]:
    return [v if type(v) in _PLAIN_AS_IS else to_plain(v) for v in value]


def _enum(value: Enum) -> Any:
    return to_plain(value.value)


def _model(value: Any) -> Any:
    return to_plain(value.model_dump(mode="json"))


# Converters by exact type: signatures canonicalise every input event, so the common types
# are found with one dict lookup instead of a chain of isinstance (and ABC) checks.
_CONVERTERS: dict[type, Converter] = {
    str: _same,
    int: _same,
    bool: _same,
    type(None): _same,
    float: _float,
    dict: _mapping,
    list: _sequence,
    tuple: _sequence,
}


# Leaves that are their own plain form: containers copy them without a call per item.
_PLAIN_AS_IS = frozenset({str, int, bool, type(None)})


def _converter_for(cls: type) -> Converter:
    """Pick (and remember) the conversion for a type not seen before."""
    convert: Converter
    if issubclass(cls, Enum):
        convert = _enum
    elif issubclass(cls, bool | int | str):
        convert = _same
    elif issubclass(cls, float):
        convert = _float
    elif issubclass(cls, Mapping):
        convert = _mapping
    elif issubclass(cls, list | tuple):
        convert = _sequence
    elif callable(getattr(cls, "model_dump", None)):
        convert = _model
    elif dataclasses.is_dataclass(cls):
        convert = _dataclass_converter(cls)
    else:
        raise CanonicalJsonError(
            f"cannot encode {cls.__name__} canonically; pass dicts, lists, str, int, finite "
            "floats, bools, None, enums, dataclasses or pydantic models (sets: sort them into "
            "a list)"
        )
    _CONVERTERS[cls] = convert
    return convert


def _dataclass_converter(cls: type) -> Converter:
    names = tuple(field.name for field in dataclasses.fields(cls))

    def convert(value: Any) -> dict[str, Any]:
        plain: dict[str, Any] = {}
        for name in names:
            item = getattr(value, name)
            plain[name] = item if type(item) in _PLAIN_AS_IS else to_plain(item)
        return plain

    return convert


def _key(key: object) -> str:
    if isinstance(key, Enum):
        key = key.value
    if not isinstance(key, str):
        raise CanonicalJsonError(f"object key {key!r} is not a string; JSON keys must be strings")
    return key


# What `json.dumps` would build per call with these options, built once (same bytes).
_ENCODER = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)


def canonical_bytes(value: Any) -> bytes:
    """The canonical UTF-8 JSON encoding of `value` (see the module docstring for the rules)."""
    return plain_canonical_bytes(to_plain(value))


def plain_canonical_bytes(plain: Any, *, floats: bool = True) -> bytes:
    """`canonical_bytes` of a value `to_plain` already returned (skips a second walk).

    `floats=False` says no float is inside (see `float_free`): orjson then writes the same
    bytes in about half the time. It spells some floats differently (1e16, not 1e+16), so a
    value that may hold one always goes through the reference encoder, and so does anything
    orjson refuses (an int beyond 64 bits, deep nesting)."""
    if not floats:
        try:
            return orjson.dumps(plain, option=orjson.OPT_SORT_KEYS)
        except orjson.JSONEncodeError:
            pass
    return _ENCODER.encode(plain).encode("utf-8")


_LEAVES = frozenset({str, int, bool, type(None)})
_UNIONS = (typing.Union, types.UnionType)
_float_free: dict[Any, bool] = {}


def float_free(hint: Any) -> bool:
    """True when no value of the type `hint` can hold a float: made only of str, int, bool,
    None, enums of those, and tuples, lists, mappings, unions and dataclasses of them."""
    known = _float_free.get(hint)
    if known is None:
        # a recursive dataclass refers to itself: the inner answer is a cautious False (the
        # reference encoder), never a guess another type's answer could be cached from
        _float_free[hint] = False
        known = _float_free[hint] = _check_float_free(hint)
    return known


def _check_float_free(hint: Any) -> bool:
    if hint in _LEAVES:
        return True
    origin = typing.get_origin(hint)
    if origin in _UNIONS or origin in (tuple, list, dict, Mapping):
        return all(arg is Ellipsis or float_free(arg) for arg in typing.get_args(hint))
    if isinstance(hint, type) and issubclass(hint, Enum):
        return all(type(member.value) in _LEAVES for member in hint)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        hints = typing.get_type_hints(hint)
        return all(float_free(hints[f.name]) for f in dataclasses.fields(hint))
    return False


def sha256_digest(data: bytes) -> str:
    """`sha256:<hex>` of raw bytes, the digest notation used across sdlcflow."""
    return DIGEST_PREFIX + hashlib.sha256(data).hexdigest()


def canonical_digest(value: Any) -> str:
    """`sha256:<hex>` of the canonical bytes of `value`."""
    return sha256_digest(canonical_bytes(value))
