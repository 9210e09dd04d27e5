"""What the coordinator keeps per repository in its faust table, and how it is encoded.

A table value holds the repository's `RepoState` and its *outbox*: the encoded decisions of
the last batch that changed it. The shell makes the table value durable (changelog flushed)
before it publishes those decisions, and republishes the outbox whenever it loads a value it
did not have in memory (after a restart or a rebalance). So a crash between the two steps
never loses decisions — the core would treat the replayed inputs as duplicates and decide
nothing — and never publishes decisions the table does not know about; republished decisions
keep their event ids, so consumers drop them as duplicates (at-least-once + idempotency).

Encoding: JSON (orjson) of {"v": 1, "state": <RepoState.to_plain()>, "outbox": [...]} with
bytes in base64; a second table maps a partition number to the repositories on it that have
live changes (the tick index).
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from sdlcflow.core.state import RepoState
from sdlcflow.errors import SdlcflowError

FORMAT_VERSION = 1


class StorageError(SdlcflowError):
    """A table value is not in the format this version of sdlcflow writes."""


@dataclass(frozen=True)
class Outbound:
    """One record to produce: encoded once, possibly sent to several topics."""

    topic: str
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()
    partition: int | None = None


@dataclass(frozen=True)
class StoredRepo:
    """A repository's table value: its state and the decisions last made for it."""

    state: RepoState
    outbox: tuple[Outbound, ...] = ()


def encode_repo(stored: StoredRepo) -> bytes:
    """The table value. orjson walks the state's dataclasses, enums and tuples itself (in C),
    giving the same JSON as `RepoState.to_plain`; a whole state is encoded per table write."""
    return orjson.dumps(
        {
            "v": FORMAT_VERSION,
            "state": stored.state,
            "outbox": [_encode_outbound(record) for record in stored.outbox],
        },
        default=_sorted_set,
    )


def _sorted_set(value: Any) -> list[Any]:
    """Sets (e.g. a change's processed input ids) as sorted lists, as `to_plain` writes them."""
    if isinstance(value, frozenset | set):
        return sorted(value)
    raise TypeError(f"cannot store {type(value).__name__} in a table value")


def decode_repo(data: bytes) -> StoredRepo:
    try:
        body = orjson.loads(data)
        if body.get("v") != FORMAT_VERSION:
            raise StorageError(
                f"table value has format {body.get('v')!r}, this build reads {FORMAT_VERSION}; "
                "run the sdlcflow version that wrote it, or rebuild the table with replay"
            )
        state = RepoState.from_plain(body["state"])
        outbox = tuple(_decode_outbound(item) for item in body["outbox"])
    except StorageError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError, SdlcflowError) as exc:
        raise StorageError(f"table value is not a stored repository: {exc}") from exc
    return StoredRepo(state, outbox)


def state_plain(data: bytes) -> dict[str, Any]:
    """Only the plain state of a table value (replay compares these)."""
    body = orjson.loads(data)
    plain: dict[str, Any] = body["state"]
    return plain


def encode_index(repos: Iterable[str]) -> bytes:
    return orjson.dumps(sorted(repos))


def decode_index(data: bytes | None) -> frozenset[str]:
    if not data:
        return frozenset()
    repos = orjson.loads(data)
    if not isinstance(repos, list) or not all(isinstance(r, str) for r in repos):
        raise StorageError("tick index value is not a JSON list of repository names")
    return frozenset(repos)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _encode_outbound(record: Outbound) -> dict[str, Any]:
    return {
        "topic": record.topic,
        "key": None if record.key is None else _b64(record.key),
        "value": _b64(record.value),
        "headers": [[name, _b64(value)] for name, value in record.headers],
    }


def _decode_outbound(item: dict[str, Any]) -> Outbound:
    key = item["key"]
    headers: Sequence[Sequence[str]] = item["headers"]
    return Outbound(
        topic=item["topic"],
        key=None if key is None else base64.b64decode(key),
        value=base64.b64decode(item["value"]),
        headers=tuple((name, base64.b64decode(value)) for name, value in headers),
    )
