"""Values as Cassandra's native protocol carries them, for the column types of the audit tables.

The sink serialises each value once, when an event becomes its rows, and sends those bytes as
they are: a shared column (the event id, its time, ...) appears in up to seven rows of an
event and is encoded once, not once per row, and binding a statement is then no more than
placing bytes. Each function gives exactly the bytes the driver's own type would give
(`cassandra.cqltypes`; a unit test holds them to it), and `AuditStore` refuses to start when
a prepared upsert's column types differ from the ones declared in `tables`.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import Any

_INT = struct.Struct(">i")
_BIGINT = struct.Struct(">q")
_DAYS = struct.Struct(">I")
_DAY_MS = 86_400_000
_EPOCH_DAY = 2**31  # a CQL date is an unsigned day count with the epoch in the middle

Serialize = Callable[[Any], bytes]


def text(value: str) -> bytes:
    return value.encode()


def blob(value: bytes) -> bytes:
    return value


def cql_int(value: int) -> bytes:
    return _INT.pack(value)


def bigint(value: int) -> bytes:
    return _BIGINT.pack(value)


def timestamp(ms: int) -> bytes:
    """A timestamp given as ms since the epoch (how the sink holds every time)."""
    return _BIGINT.pack(ms)


def day_of(ms: int) -> bytes:
    """The CQL date of the UTC day containing `ms` (ms since the epoch, not negative)."""
    return _DAYS.pack(ms // _DAY_MS + _EPOCH_DAY)


def boolean(value: bool) -> bytes:
    return b"\x01" if value else b"\x00"


def text_list(values: Sequence[str]) -> bytes:
    """A list<text>: the element count, then each element with its length (protocol v3+)."""
    parts = [_INT.pack(len(values))]
    for value in values:
        encoded = value.encode()
        parts += (_INT.pack(len(encoded)), encoded)
    return b"".join(parts)


# by the CQL type names the tables declare; `date` columns are given as ms since the epoch
SERIALIZERS: dict[str, Serialize] = {
    "text": text,
    "blob": blob,
    "int": cql_int,
    "bigint": bigint,
    "timestamp": timestamp,
    "date": day_of,
    "boolean": boolean,
    "list<text>": text_list,
}


def serializer(cql_type: str) -> Serialize:
    """The serialiser of a declared column type; a type the tables do not use is an error."""
    try:
        return SERIALIZERS[cql_type]
    except KeyError:
        raise KeyError(
            f"no serialiser for CQL type {cql_type!r}; add one to sdlcflow.audit.cql"
        ) from None
