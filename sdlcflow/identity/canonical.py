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
from collections.abc import Mapping
from enum import Enum
from typing import Any

from sdlcflow.errors import SdlcflowError

DIGEST_PREFIX = "sha256:"


class CanonicalJsonError(SdlcflowError):
    """A value cannot be encoded canonically (a set, a non-finite float, a foreign object)."""


def to_plain(value: Any) -> Any:
    """Turn models, dataclasses, enums and tuples into plain JSON values, rejecting the rest."""
    if value is None or isinstance(value, bool | int | str):
        return value.value if isinstance(value, Enum) else value
    if isinstance(value, Enum):
        return to_plain(value.value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise CanonicalJsonError(f"{value!r} has no JSON form; use a finite number or a string")
        return value
    if isinstance(value, Mapping):
        return {_key(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_plain(v) for v in value]
    model_dump = getattr(value, "model_dump", None)
    if callable(model_dump):
        return to_plain(model_dump(mode="json"))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_plain({f.name: getattr(value, f.name) for f in dataclasses.fields(value)})
    raise CanonicalJsonError(
        f"cannot encode {type(value).__name__} canonically; pass dicts, lists, str, int, finite "
        "floats, bools, None, enums, dataclasses or pydantic models (sets: sort them into a list)"
    )


def _key(key: object) -> str:
    if isinstance(key, Enum):
        key = key.value
    if not isinstance(key, str):
        raise CanonicalJsonError(f"object key {key!r} is not a string; JSON keys must be strings")
    return key


def canonical_bytes(value: Any) -> bytes:
    """The canonical UTF-8 JSON encoding of `value` (see the module docstring for the rules)."""
    return json.dumps(
        to_plain(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def sha256_digest(data: bytes) -> str:
    """`sha256:<hex>` of raw bytes, the digest notation used across sdlcflow."""
    return DIGEST_PREFIX + hashlib.sha256(data).hexdigest()


def canonical_digest(value: Any) -> str:
    """`sha256:<hex>` of the canonical bytes of `value`."""
    return sha256_digest(canonical_bytes(value))
