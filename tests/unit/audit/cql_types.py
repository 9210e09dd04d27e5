"""The driver's own CQL types, by the type names of the audit tables: what a row's bytes mean,
read back or encoded as Cassandra and the driver would."""

from __future__ import annotations

from typing import Any

from cassandra import cqltypes

DRIVER_TYPES: dict[str, Any] = {
    "text": cqltypes.UTF8Type,
    "blob": cqltypes.BytesType,
    "int": cqltypes.Int32Type,
    "bigint": cqltypes.LongType,
    "timestamp": cqltypes.DateType,
    "date": cqltypes.SimpleDateType,
    "boolean": cqltypes.BooleanType,
    "list<text>": cqltypes.ListType.apply_parameters([cqltypes.UTF8Type]),
}
