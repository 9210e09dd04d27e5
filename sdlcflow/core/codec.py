"""Plain-data conversion for the core's frozen dataclasses (events and state).

The faust shell keeps one `RepoState` per repository in a table and tests compare plans byte
for byte, so both need a canonical JSON-ready form: dataclasses become dicts, enums their
values, tuples and frozensets lists (frozensets sorted), mappings dicts. Converters are built
once per class from its type hints, so encoding stays cheap on the hot path.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Callable, Mapping
from enum import Enum
from typing import Any, TypeVar

from sdlcflow.errors import SdlcflowError

T = TypeVar("T")

Encoder = Callable[[Any], Any]
Decoder = Callable[[Any], Any]


class CodecError(SdlcflowError):
    """Plain data did not match the dataclass it was decoded into."""


def to_plain(value: Any) -> Any:
    """Encode a dataclass (or anything built of the supported types) as plain JSON data."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _encoder(type(value))(value)
    return _encode_any(value)


def from_plain(cls: type[T], data: Any) -> T:
    """Decode plain data produced by `to_plain` back into `cls`."""
    decoded: T = _decoder(cls)(data)
    return decoded


def canonical_json(value: Any) -> bytes:
    """Byte-identical JSON for equal values: sorted keys, no spaces."""
    return json.dumps(to_plain(value), sort_keys=True, separators=(",", ":")).encode()


def _encode_any(value: Any) -> Any:
    cls = type(value)
    if cls in _AS_IS:
        return value
    encode = _ENCODERS.get(cls)
    if encode is None:
        encode = _encoder_for_type(cls)
    return encode(value)


# Values that are their own plain form. The shell encodes a repository's whole state per table
# write, so leaves are copied without a call and other types found with one dict lookup.
_AS_IS = frozenset({str, int, bool, float, type(None)})
_ENCODERS: dict[type, Encoder] = {}
_DECODERS: dict[Any, Decoder] = {}


def _encoder_for_type(cls: type) -> Encoder:
    """Pick (and remember) how values of a type not seen before are encoded."""
    encode: Encoder
    if issubclass(cls, Enum):
        encode = _enum_value
    elif dataclasses.is_dataclass(cls):
        return _encoder(cls)
    elif issubclass(cls, tuple | list):
        encode = _encode_sequence
    elif issubclass(cls, frozenset | set):
        encode = _encode_set
    elif issubclass(cls, Mapping):
        encode = _encode_mapping
    else:
        encode = _identity
    _ENCODERS[cls] = encode
    return encode


def _enum_value(value: Enum) -> Any:
    return value.value


def _identity(value: Any) -> Any:
    return value


def _encode_sequence(value: tuple[Any, ...] | list[Any]) -> list[Any]:
    return [item if type(item) in _AS_IS else _encode_any(item) for item in value]


def _encode_set(value: frozenset[Any] | set[Any]) -> list[Any]:
    return sorted(_encode_any(item) for item in value)


def _encode_mapping(value: Mapping[Any, Any]) -> dict[str, Any]:
    return {
        str(key): item if type(item) in _AS_IS else _encode_any(item) for key, item in value.items()
    }


def _encoder(cls: type) -> Encoder:
    encoder = _ENCODERS.get(cls)
    if encoder is None:
        names = tuple(field.name for field in dataclasses.fields(cls))

        def encoder(value: Any) -> dict[str, Any]:
            plain: dict[str, Any] = {}
            for name in names:
                item = getattr(value, name)
                plain[name] = item if type(item) in _AS_IS else _encode_any(item)
            return plain

        _ENCODERS[cls] = encoder
    return encoder


def _decoder(hint: Any) -> Decoder:
    decoder = _DECODERS.get(hint)
    if decoder is None:
        decoder = _build_decoder(hint)
        _DECODERS[hint] = decoder
    return decoder


def _build_decoder(hint: Any) -> Decoder:
    if hint is Any:
        return lambda data: data
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _dataclass_decoder(hint)
    if isinstance(hint, type) and issubclass(hint, Enum):
        return lambda data: hint(data)
    if hint in (str, int, bool, float, type(None)):
        return _scalar_decoder(hint)
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return _union_decoder(args)
    if origin is tuple:
        item = _decoder(args[0])
        return lambda data: tuple(item(x) for x in data)
    if origin is frozenset:
        member = _decoder(args[0])
        return lambda data: frozenset(member(x) for x in data)
    if origin in (dict, Mapping):
        key, val = _decoder(args[0]), _decoder(args[1])
        return lambda data: {key(k): val(v) for k, v in data.items()}
    raise CodecError(f"cannot decode type {hint!r}; use str/int/bool/float/enum/tuple/dataclass")


def _scalar_decoder(hint: type) -> Decoder:
    if hint is float:
        return lambda data: float(data)

    def check(data: Any) -> Any:
        if hint is type(None):
            if data is not None:
                raise CodecError(f"expected null, got {data!r}")
            return None
        if not isinstance(data, hint) or (hint is int and isinstance(data, bool)):
            raise CodecError(f"expected {hint.__name__}, got {data!r}")
        return data

    return check


def _union_decoder(args: tuple[Any, ...]) -> Decoder:
    options = [arg for arg in args if arg is not type(None)]
    optional = len(options) != len(args)
    if len(options) == 1:
        inner = _decoder(options[0])
        return lambda data: None if data is None else inner(data)

    def decode(data: Any) -> Any:
        if data is None and optional:
            return None
        raise CodecError(f"ambiguous union {args!r}: decode payload unions through Event")

    return decode


def _required(field: dataclasses.Field[Any]) -> bool:
    """A field with neither a default nor a default factory (data written before it existed
    decodes with the default)."""
    return field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING


def _dataclass_decoder(cls: type) -> Decoder:
    hints = typing.get_type_hints(cls)
    fields = tuple(
        (field.name, _lazy(hints[field.name]), _required(field))
        for field in dataclasses.fields(cls)
        if field.init
    )

    def decode(data: Any) -> Any:
        if not isinstance(data, Mapping):
            raise CodecError(f"{cls.__name__}: expected an object, got {data!r}")
        kwargs: dict[str, Any] = {}
        for name, field_decoder, required in fields:
            if name in data:
                kwargs[name] = field_decoder()(data[name])
            elif required:
                raise CodecError(f"{cls.__name__}: missing field {name!r}")
        return cls(**kwargs)

    return decode


def _lazy(hint: Any) -> Callable[[], Decoder]:
    """Defer building nested decoders so recursive and forward references resolve."""
    cache: list[Decoder] = []

    def get() -> Decoder:
        if not cache:
            cache.append(_decoder(hint))
        return cache[0]

    return get


def event_to_plain(event: Any, *, with_scope: bool = False) -> dict[str, Any]:
    """An Event as plain data; the scope is the shell's, so it is left out unless asked for."""
    plain: dict[str, Any] = {
        "envelope": to_plain(event.envelope),
        "payload": to_plain(event.payload),
    }
    if with_scope and event.scope is not None:
        plain["scope"] = to_plain(event.scope)
    return plain


def event_from_plain(data: Mapping[str, Any]) -> Any:
    """Rebuild an Event; the payload class comes from the envelope's type via EVENT_TYPES."""
    from sdlcflow.core.events import EVENT_TYPES, ActorScope, Envelope, Event

    envelope = from_plain(Envelope, data["envelope"])
    payload_type = EVENT_TYPES.get(envelope.type)
    if payload_type is None:
        raise CodecError(
            f"unknown event type {envelope.type!r}; known: {', '.join(sorted(EVENT_TYPES))}"
        )
    scope = data.get("scope")
    return Event(
        envelope,
        from_plain(payload_type, data["payload"]),
        None if scope is None else from_plain(ActorScope, scope),
    )
