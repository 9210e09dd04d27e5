"""Avro binary encoders and decoders compiled per event type, dataclass <-> bytes directly.

fastavro interprets the schema on every call and needs a dict per record in between, which
for our typical events costs 3-4x the time of the >= 100k records/s per core target. These
functions are generated once per (schema, dataclass) pair, like `dataclasses` generates
`__init__`: straight-line code that reads attributes and appends to a bytearray, or reads the
bytes into dataclasses without building dicts. They are used only when the writer schema is the
current one; anything else (older writers, schema resolution) goes through fastavro. Tests prove
byte-for-byte equality with fastavro both ways.

Decoders are optimistic: they read the common encodings (one-byte lengths, union branches and
enum symbols; two-byte lengths; six-byte timestamps) with table look-ups and few checks, and
refuse anything else by raising `Truncated`, `Malformed`, `IndexError`, `ValueError` (bad UTF-8)
or `struct.error`, or by ending somewhere other than the end of the frame. The caller then
decodes the frame with fastavro, which accepts what Avro allows and names what is wrong; tests
prove both paths agree on damaged frames. Every count is bounded by the bytes left and slices
never copy more than the frame, so no input allocates or loops beyond its own size.
"""

from __future__ import annotations

import dataclasses
import enum
import struct
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sdlcflow.streams.records import field_hints, optional_inner
from sdlcflow.streams.schema_store import named_types, resolve_type

Schema = Any
Encoder = Callable[[bytearray, Any], None]
Decoder = Callable[[bytes, int], tuple[Any, int]]

_DOUBLE = struct.Struct("<d")
_FLOAT = struct.Struct("<f")
_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1
_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1


class Truncated(Exception):
    """The bytes end before the record does."""


class Malformed(Exception):
    """The bytes cannot be a record of the schema (bad index, negative length, overlong int)."""


def write_long(out: bytearray, value: int) -> None:
    """Zig-zag varint, as Avro encodes int and long."""
    if not _LONG_MIN <= value <= _LONG_MAX:
        raise ValueError(f"{value} does not fit an Avro long")
    n = (value << 1) ^ (value >> 63)
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def read_long(data: bytes, pos: int) -> tuple[int, int]:
    """Read a zig-zag varint at `pos`; return the value and the next position.

    Reading past the end raises IndexError (the caller reports truncation).
    """
    n = 0
    for shift in range(0, 70, 7):
        byte = data[pos]
        pos += 1
        n |= (byte & 0x7F) << shift
        if byte < 0x80:
            return (n >> 1) ^ -(n & 1), pos
    raise Malformed("varint longer than 10 bytes")


# One-byte varints, looked up rather than computed (most lengths and numbers in our events fit):
# SMALL_LONG[b] is the zig-zag value of the single byte b, SHORT_LENGTH[b] the same when it is a
# valid (non-negative) length; None where b needs the general varint reader.
SMALL_LONG: tuple[int | None, ...] = tuple(
    ((b >> 1) ^ -(b & 1)) if b < 0x80 else None for b in range(256)
)
SHORT_LENGTH: tuple[int | None, ...] = tuple(
    v if v is not None and v >= 0 else None for v in SMALL_LONG
)
# SHORT_STOP[b]: how far past a one-byte length b its string ends (the length plus the byte).
SHORT_STOP: tuple[int | None, ...] = tuple(None if n is None else n + 1 for n in SHORT_LENGTH)
# BOOLEAN[b]: the boolean the byte b encodes, None when b is neither 0 nor 1.
BOOLEAN: tuple[bool | None, ...] = (False, True) + (None,) * 254


def read_length(data: bytes, pos: int) -> tuple[int, int]:
    """A length (string, bytes) as a varint at `pos`; Malformed when negative."""
    n, pos = read_long(data, pos)
    if n < 0:
        raise Malformed("negative length")
    return n, pos


def string_bounds(data: bytes, pos: int) -> tuple[int, int]:
    """For a string or bytes whose length at `pos` takes more than a byte: (start - 1, stop).

    Two-byte lengths (64 to 8191 bytes: signatures, credentials, sha256 digests) are read
    here without the general varint loop.
    """
    low = data[pos]
    high = data[pos + 1]
    if low > 0x7F and high < 0x80 and not low & 1:  # two bytes, not negative (zig-zag sign)
        return pos + 1, pos + 2 + (((low & 0x7F) | (high << 7)) >> 1)
    n, start = read_length(data, pos)
    return start - 1, start + n


# A six-byte varint read at once: its bytes as a little-endian int, the continuation bits that
# mark exactly six bytes, and the shifts and masks that join its 7-bit groups. Timestamps in
# milliseconds from mid-1970 to 2039 take six bytes.
SIX_BYTE_MARKS = 0x808080808080
SIX_BYTE_CONTINUED = 0x008080808080


def join_six_groups(x: str) -> str:
    """Source joining the 7-bit groups of six varint bytes held, little-endian, in int `x`."""
    return " | ".join(
        f"({x} >> {i} & {0x7F << (7 * i):#x})" if i else f"({x} & 0x7f)" for i in range(6)
    )


def by_first_byte(values: Sequence[Any]) -> tuple[Any, ...]:
    """values[i] at the one-byte zig-zag encoding of i (i < 64), None at every other byte.

    An enum symbol or union branch is then one lookup of the byte as written; an index written
    in more bytes than needed finds None, and the caller decodes that frame the general way.
    """
    table: list[Any] = [None] * 256
    for index, value in enumerate(values[:64]):
        table[index << 1] = value
    return tuple(table)


class _Source:
    """Accumulates generated functions and the objects they refer to."""

    def __init__(self, names: Mapping[str, Any]) -> None:
        self.names = names
        self.namespace: dict[str, Any] = {
            "_write_long": write_long,
            "_read_long": read_long,
            "_read_length": read_length,
            "_pack_double": _DOUBLE.pack,
            "_pack_float": _FLOAT.pack,
            "_unpack_double": _DOUBLE.unpack_from,
            "_unpack_float": _FLOAT.unpack_from,
            "_Truncated": Truncated,
            "_Malformed": Malformed,
            "_new": object.__new__,
            "_SHORT_LENGTH": SHORT_LENGTH,
            "_SMALL_LONG": SMALL_LONG,
            "_BOOLEAN": BOOLEAN,
            "_SHORT_STOP": SHORT_STOP,
            "_string_bounds": string_bounds,
            "_from_bytes": int.from_bytes,
            "_LONG_MIN": _LONG_MIN,
            "_LONG_MAX": _LONG_MAX,
            "_INT_MIN": _INT_MIN,
            "_INT_MAX": _INT_MAX,
        }
        self.functions: dict[str, str] = {}
        self._counter = 0

    def var(self, stem: str) -> str:
        self._counter += 1
        return f"{stem}{self._counter}"

    def constant(self, stem: str, value: Any) -> str:
        name = self.var(f"_{stem}")
        self.namespace[name] = value
        return name

    def compile(self) -> dict[str, Any]:
        exec("\n".join(self.functions.values()), self.namespace)
        return self.namespace


# ---------------------------------------------------------------------------------------------
# Encoders


class _EncoderBuilder(_Source):
    def record(self, cls: type, schema: Mapping[str, Any], space: str | None) -> str:
        """Name of `def enc(out, obj)` writing a `cls` instance as record `schema`."""
        name = f"_enc_{cls.__name__}_{id(schema)}"
        if name in self.functions:
            return name
        self.functions[name] = ""  # reserve: recursive types refer to themselves
        hints = field_hints(cls)
        space = schema.get("namespace", space)
        lines = [f"def {name}(out, obj):"]
        for field in schema["fields"]:
            avro = resolve_type(field["type"], self.names, space)
            lines += self.value(hints[field["name"]], avro, f"obj.{field['name']}", space, "    ")
        self.functions[name] = "\n".join(lines) + "\n"
        return name

    def value(self, hint: Any, avro: Schema, expr: str, space: str | None, pad: str) -> list[str]:
        inner = optional_inner(hint)
        if inner is not None:
            return self._optional(inner, avro, expr, space, pad)
        kind = avro if isinstance(avro, str) else avro["type"]
        if kind in ("long", "int"):
            if isinstance(avro, Mapping) and avro.get("logicalType") == "timestamp-millis":
                return self._timestamp(expr, pad, kind)
            return self._long(expr, pad, kind)
        if kind == "string":
            v = self.var("s")
            return [f"{pad}{v} = {expr}.encode()", *self._length(v, pad), f"{pad}out += {v}"]
        if kind == "bytes":
            v = self.var("b")
            return [f"{pad}{v} = {expr}", *self._length(v, pad), f"{pad}out += {v}"]
        if kind == "boolean":
            return [f"{pad}out.append(1 if {expr} else 0)"]
        if kind == "double":
            return [f"{pad}out += _pack_double({expr})"]
        if kind == "float":
            return [f"{pad}out += _pack_float({expr})"]
        if kind == "null":
            return []
        if kind == "enum":
            index = self.constant("index", {m: i for i, m in enumerate(_members(hint, avro))})
            return [f"{pad}_write_long(out, {index}[{expr}])"]
        if kind == "array":
            return self._array(hint, avro, expr, space, pad)
        if kind == "map":
            return self._map(hint, avro, expr, space, pad)
        if kind == "record":
            return [f"{pad}{self.record(hint, avro, space)}(out, {expr})"]
        raise TypeError(f"no compiled encoder for {avro!r}")

    def _long(self, expr: str, pad: str, kind: str) -> list[str]:
        v = self.var("n")
        low, high = ("_INT_MIN", "_INT_MAX") if kind == "int" else ("_LONG_MIN", "_LONG_MAX")
        return [
            f"{pad}{v} = {expr}",
            f"{pad}if 0 <= {v} < 64:",
            f"{pad}    out.append({v} << 1)",
            f"{pad}elif {low} <= {v} <= {high}:",
            f"{pad}    _write_long(out, {v})",
            f"{pad}else:",
            f"{pad}    raise ValueError(f'{{{v}!r}} does not fit an Avro {kind}')",
        ]

    def _timestamp(self, expr: str, pad: str, kind: str) -> list[str]:
        """A long that usually takes six bytes (milliseconds from mid-1970 to 2039): its 7-bit
        groups spread into one int and written at once, else the general varint."""
        v, z = self.var("n"), self.var("z")
        spread = " | ".join(
            f"{z} << {i} & {0x7F << (8 * i):#x}" if i else f"{z} & 0x7f" for i in range(6)
        )
        return [
            f"{pad}{v} = {expr}",
            f"{pad}{z} = ({v} << 1) ^ ({v} >> 63)",
            f"{pad}if {1 << 35:#x} <= {z} < {1 << 42:#x}:",
            f"{pad}    out += ({spread} | {SIX_BYTE_CONTINUED:#x}).to_bytes(6, 'little')",
            f"{pad}else:",
            *self._long(v, pad + "    ", kind),
        ]

    def _length(self, v: str, pad: str) -> list[str]:
        n = self.var("n")
        return [
            f"{pad}{n} = len({v})",
            f"{pad}if {n} < 64:",
            f"{pad}    out.append({n} << 1)",
            f"{pad}else:",
            f"{pad}    _write_long(out, {n})",
        ]

    def _optional(
        self, inner: Any, avro: Schema, expr: str, space: str | None, pad: str
    ) -> list[str]:
        branches = list(avro)
        null_index = branches.index("null")
        other = resolve_type(branches[1 - null_index], self.names, space)
        v = self.var("o")
        return [
            f"{pad}{v} = {expr}",
            f"{pad}if {v} is None:",
            f"{pad}    out.append({null_index << 1})",
            f"{pad}else:",
            f"{pad}    out.append({(1 - null_index) << 1})",
            *self.value(inner, other, v, space, pad + "    "),
        ]

    def _array(self, hint: Any, avro: Schema, expr: str, space: str | None, pad: str) -> list[str]:
        items = resolve_type(avro["items"], self.names, space)
        v, item = self.var("a"), self.var("i")
        body = self.value(typing.get_args(hint)[0], items, item, space, pad + "        ")
        return [
            f"{pad}{v} = {expr}",
            f"{pad}if {v}:",
            f"{pad}    _write_long(out, len({v}))",
            f"{pad}    for {item} in {v}:",
            *body,
            f"{pad}out.append(0)",
        ]

    def _map(self, hint: Any, avro: Schema, expr: str, space: str | None, pad: str) -> list[str]:
        """One block of (key, value) pairs and the closing zero, as fastavro writes a map."""
        values = resolve_type(avro["values"], self.names, space)
        v, key, item = self.var("m"), self.var("k"), self.var("i")
        body = self.value(typing.get_args(hint)[1], values, item, space, pad + "        ")
        return [
            f"{pad}{v} = {expr}",
            f"{pad}if {v}:",
            f"{pad}    _write_long(out, len({v}))",
            f"{pad}    for {key}, {item} in {v}.items():",
            *self.value(str, "string", key, space, pad + "        "),
            *body,
            f"{pad}out.append(0)",
        ]


# ---------------------------------------------------------------------------------------------
# Decoders


class _DecoderBuilder(_Source):
    """Straight-line readers that accept only what they can read cheaply and refuse the rest.

    Every refusal (an exception, or a record not ending where the frame does) sends the frame
    to fastavro, which decides what it is: so the checks here only need to be sound, not
    precise, and rare shapes (a non-canonical union or enum index) cost nothing on the hot path.
    Strings are not checked against the end one by one: a length past the end leaves `pos`
    past it, and positions never go back, so the caller's end check catches it.
    """

    _inlining: tuple[str, ...] = ()

    def compile(self) -> dict[str, Any]:
        # the helpers and constants become default arguments: local loads, not global ones
        defaults = ", ".join(f"{name}={name}" for name in self.namespace if name.startswith("_"))
        for name, source in self.functions.items():
            self.functions[name] = source.replace("(data, pos):", f"(data, pos, {defaults}):", 1)
        return super().compile()

    def record(self, cls: type, schema: Mapping[str, Any], space: str | None) -> str:
        """Name of `def dec(data, pos) -> (obj, pos)` reading record `schema` into `cls`."""
        name = f"_dec_{cls.__name__}_{id(schema)}"
        if name in self.functions:
            return name
        self.functions[name] = ""
        lines = [f"def {name}(data, pos):", "    end = len(data)"]
        lines += self.record_lines(cls, schema, space, "obj", "    ")
        lines.append("    return obj, pos")
        self.functions[name] = "\n".join(lines) + "\n"
        return name

    def record_lines(
        self, cls: type, schema: Mapping[str, Any], space: str | None, target: str, pad: str
    ) -> list[str]:
        """Statements reading record `schema` into a new `cls` bound to `target`, inline."""
        hints = field_hints(cls)
        if set(hints) != {f["name"] for f in schema["fields"]}:
            raise TypeError(f"{cls.__name__} and record {schema['name']} have different fields")
        space = schema.get("namespace", space)
        self._inlining = (*self._inlining, str(schema["name"]))
        lines: list[str] = []
        assigned: list[tuple[str, str]] = []
        for field in schema["fields"]:
            avro = resolve_type(field["type"], self.names, space)
            value = self.var("f")
            lines += self.value(hints[field["name"]], avro, value, space, pad)
            assigned.append((field["name"], value))
        self._inlining = self._inlining[:-1]
        cls_name = self.constant(cls.__name__, cls)
        if _plain_dataclass(cls):
            # a frozen dataclass filled through its instance dict: no __init__, no setattr
            slots = self.var("d")
            lines += [f"{pad}{target} = _new({cls_name})", f"{pad}{slots} = {target}.__dict__"]
            lines += [f"{pad}{slots}[{name!r}] = {value}" for name, value in assigned]
        else:
            fields = ", ".join(f"{name}={value}" for name, value in assigned)
            lines += [f"{pad}{target} = {cls_name}({fields})"]
        return lines

    def value(self, hint: Any, avro: Schema, target: str, space: str | None, pad: str) -> list[str]:
        inner = optional_inner(hint)
        if inner is not None:
            return self._optional(inner, avro, target, space, pad)
        kind = avro if isinstance(avro, str) else avro["type"]
        if kind in ("long", "int"):
            if isinstance(avro, Mapping) and avro.get("logicalType") == "timestamp-millis":
                return self._timestamp(target, pad)
            return self._long(target, pad)
        if kind in ("string", "bytes"):
            # `stop` ends the value; its bytes start right after the length, at pos + 1 when
            # the length takes one byte (looked up), else _string_bounds says where
            stop = self.var("t")
            read = f"data[pos + 1:{stop}]" + (".decode()" if kind == "string" else "")
            return [
                f"{pad}{stop} = _SHORT_STOP[data[pos]]",
                f"{pad}if {stop} is None:",
                f"{pad}    pos, {stop} = _string_bounds(data, pos)",
                f"{pad}else:",
                f"{pad}    {stop} += pos",
                f"{pad}{target} = {read}",
                f"{pad}pos = {stop}",
            ]
        if kind == "boolean":
            return self._lookup(target, "_BOOLEAN", "boolean byte is not 0 or 1", pad)
        if kind in ("double", "float"):
            size, unpack = (8, "_unpack_double") if kind == "double" else (4, "_unpack_float")
            return [
                f"{pad}{target} = {unpack}(data, pos)[0]",  # struct.error past the end
                f"{pad}pos += {size}",
            ]
        if kind == "null":
            return [f"{pad}{target} = None"]
        if kind == "enum":
            members = self.constant("members", by_first_byte(_members(hint, avro)))
            return self._lookup(target, members, "enum index out of range", pad)
        if kind == "array":
            return self._array(hint, avro, target, space, pad)
        if kind == "map":
            return self._map(hint, avro, target, space, pad)
        if kind == "record":
            if avro["name"] in self._inlining:  # a recursive type: call, do not inline forever
                return [f"{pad}{target}, pos = {self.record(hint, avro, space)}(data, pos)"]
            return self.record_lines(hint, avro, space, target, pad)
        raise TypeError(f"no compiled decoder for {avro!r}")

    def _lookup(self, target: str, table: str, problem: str, pad: str) -> list[str]:
        """One byte looked up in `table`; None there means the frame is not for this path."""
        return [
            f"{pad}{target} = {table}[data[pos]]",
            f"{pad}if {target} is None:",
            f"{pad}    raise _Malformed({problem!r})",
            f"{pad}pos += 1",
        ]

    def _long(self, target: str, pad: str) -> list[str]:
        # data[pos] past the end raises IndexError, which the caller reports as truncation
        return [
            f"{pad}{target} = _SMALL_LONG[data[pos]]",
            f"{pad}if {target} is None:",
            f"{pad}    {target}, pos = _read_long(data, pos)",
            f"{pad}else:",
            f"{pad}    pos += 1",
        ]

    def _timestamp(self, target: str, pad: str) -> list[str]:
        """A long that usually takes six bytes: read them as one int and join the groups."""
        # a slice cut short by the end only moves `pos` past it, which the caller refuses
        return [
            f"{pad}{target} = _from_bytes(data[pos:pos + 6], 'little')",
            f"{pad}if {target} & {SIX_BYTE_MARKS:#x} == {SIX_BYTE_CONTINUED:#x}:",
            f"{pad}    {target} = {join_six_groups(target)}",
            f"{pad}    {target} = ({target} >> 1) ^ -({target} & 1)",
            f"{pad}    pos += 6",
            f"{pad}else:",
            f"{pad}    {target}, pos = _read_long(data, pos)",
        ]

    def _optional(
        self, inner: Any, avro: Schema, target: str, space: str | None, pad: str
    ) -> list[str]:
        branches = list(avro)
        null_index = branches.index("null")
        other = resolve_type(branches[1 - null_index], self.names, space)
        i = self.var("u")
        # the branch byte as written (0 or 2 for index 0 or 1); anything else is refused here
        return [
            f"{pad}{i} = data[pos]",
            f"{pad}pos += 1",
            f"{pad}if {i} == {null_index * 2}:",
            f"{pad}    {target} = None",
            f"{pad}elif {i} == {(1 - null_index) * 2}:",
            *self.value(inner, other, target, space, pad + "    "),
            f"{pad}else:",
            f"{pad}    raise _Malformed('union index is not a one-byte 0 or 1')",
        ]

    def _array(
        self, hint: Any, avro: Schema, target: str, space: str | None, pad: str
    ) -> list[str]:
        items = resolve_type(avro["items"], self.names, space)
        if _min_size(items, self.names, space) < 1:
            raise TypeError(f"array items {items!r} may take no bytes; not compiled")
        count, acc, item, size = self.var("c"), self.var("l"), self.var("i"), self.var("z")
        body = self.value(typing.get_args(hint)[0], items, item, space, pad + "        ")
        return [
            f"{pad}{acc} = []",
            *self._long(count, pad),
            f"{pad}while {count}:",
            f"{pad}    if {count} < 0:",
            f"{pad}        {count} = -{count}",
            *self._long(size, pad + "        "),
            # every item takes a byte at least: no count runs a loop beyond the bytes left
            f"{pad}    if {count} > end - pos:",
            f"{pad}        raise _Truncated('array longer than the bytes left')",
            f"{pad}    for _ in range({count}):",
            *body,
            f"{pad}        {acc}.append({item})",
            *self._long(count, pad + "    "),
            f"{pad}{target} = tuple({acc})",
        ]

    def _map(self, hint: Any, avro: Schema, target: str, space: str | None, pad: str) -> list[str]:
        """Blocks of (key, value) pairs into a dict, as fastavro reads a map (last key wins)."""
        values = resolve_type(avro["values"], self.names, space)
        count, acc, key, item = self.var("c"), self.var("g"), self.var("k"), self.var("i")
        size = self.var("z")
        inner = pad + "        "
        return [
            f"{pad}{acc} = {{}}",
            *self._long(count, pad),
            f"{pad}while {count}:",
            f"{pad}    if {count} < 0:",
            f"{pad}        {count} = -{count}",
            *self._long(size, pad + "        "),
            # every key takes a byte at least: no count runs a loop beyond the bytes left
            f"{pad}    if {count} > end - pos:",
            f"{pad}        raise _Truncated('map longer than the bytes left')",
            f"{pad}    for _ in range({count}):",
            *self.value(str, "string", key, space, inner),
            *self.value(typing.get_args(hint)[1], values, item, space, inner),
            f"{inner}{acc}[{key}] = {item}",
            *self._long(count, pad + "    "),
            f"{pad}{target} = {acc}",
        ]


def _members(hint: Any, avro: Mapping[str, Any]) -> list[Any]:
    """Enum members in schema symbol order (the drift test keeps them equal to the values)."""
    by_value = (
        {m.value: m for m in hint} if isinstance(hint, type) and issubclass(hint, enum.Enum) else {}
    )
    return [by_value.get(symbol, symbol) for symbol in avro["symbols"]]


def _plain_dataclass(cls: type) -> bool:
    """Frozen dataclasses without __post_init__ can be filled without running __init__."""
    return (
        dataclasses.is_dataclass(cls)
        and not hasattr(cls, "__post_init__")
        and not hasattr(cls, "__slots__")
    )


def _min_size(avro: Schema, names: Mapping[str, Any], space: str | None) -> int:
    """Fewest bytes a value of `avro` can take; array counts are bounded by bytes left over it."""
    avro = resolve_type(avro, names, space)
    if isinstance(avro, list):
        return 1
    kind = avro if isinstance(avro, str) else avro["type"]
    if kind == "null":
        return 0
    if kind == "record":
        inner = avro.get("namespace", space)
        return sum(_min_size(f["type"], names, inner) for f in avro["fields"])
    if kind == "fixed":
        return int(avro["size"])
    return 1


def compile_event(
    schema: Mapping[str, Any], envelope_cls: type, payload_cls: type, event_cls: type
) -> tuple[Encoder, Decoder]:
    """The (encode, decode) pair of one event record {envelope, payload} for the given classes."""
    names = named_types(schema)
    space = schema.get("namespace")
    fields = {f["name"]: resolve_type(f["type"], names, space) for f in schema["fields"]}
    encoders = _EncoderBuilder(names)
    enc_envelope = encoders.record(envelope_cls, fields["envelope"], space)
    enc_payload = encoders.record(payload_cls, fields["payload"], space)
    enc_ns = encoders.compile()
    write_envelope, write_payload = enc_ns[enc_envelope], enc_ns[enc_payload]

    def encode(out: bytearray, event: Any) -> None:
        write_envelope(out, event.envelope)
        write_payload(out, event.payload)

    return encode, _event_decoder(names, fields, space, envelope_cls, payload_cls, event_cls)


def _event_decoder(
    names: Mapping[str, Any],
    fields: Mapping[str, Any],
    space: str | None,
    envelope_cls: type,
    payload_cls: type,
    event_cls: type,
) -> Decoder:
    """One function reading envelope and payload inline and building the event."""
    builder = _DecoderBuilder(names)
    lines = ["def decode_event(data, pos):", "    end = len(data)"]
    lines += builder.record_lines(envelope_cls, fields["envelope"], space, "envelope", "    ")
    lines += builder.record_lines(payload_cls, fields["payload"], space, "payload", "    ")
    event = builder.constant("Event", event_cls)
    if _plain_dataclass(event_cls) and [f.name for f in dataclasses.fields(event_cls)] == [
        "envelope",
        "payload",
        "scope",
    ]:
        lines += [
            f"    event = _new({event})",
            "    fields = event.__dict__",
            "    fields['envelope'] = envelope",
            "    fields['payload'] = payload",
            "    fields['scope'] = None",
        ]
    else:
        lines.append(f"    event = {event}(envelope, payload)")
    lines.append("    return event, pos")
    builder.functions["decode_event"] = "\n".join(lines) + "\n"
    decode: Decoder = builder.compile()["decode_event"]
    return decode
