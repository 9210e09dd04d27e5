"""What the coordinator keeps per repository in its faust table, and how it is encoded.

A table value holds the repository's `RepoState` and its *outbox*: the encoded decisions of
the last batch that changed it. The shell makes the table value durable (changelog flushed)
before it publishes those decisions, and republishes the outbox whenever it loads a value it
did not have in memory (after a restart or a rebalance). So a crash between the two steps
never loses decisions — the core would treat the replayed inputs as duplicates and decide
nothing — and never publishes decisions the table does not know about; republished decisions
keep their event ids, so consumers drop them as duplicates (at-least-once + idempotency).

The state's `closed` map (up to `CLOSED_MEMORY` outcomes, most of a long-lived repository's
value) lives under a second key of the same table, `closed_key(repo key)`, written only by the
batches that close a change; the main value keeps the rest of the state and names the closed
map it belongs to by its size and last change id. Both keys are on the repository's partition,
and the shell has the closed key's changelog record confirmed before it writes the main value,
so a crash between the two leaves a closed map *newer* than the main value, never older, and
`decode_repo` cuts it back to the entry the main value names: the replayed inputs then close
the change again, exactly as before the crash.

Encoding (format 2): JSON (orjson) of {"v": 2, "state": <RepoState.to_plain() without
"closed">, "closed": {"n": <size>, "last": <last change id or null>}, "outbox": [...]} with
bytes in base64, and under the closed key {"v": 2, "closed": {change id: outcome, ...}} (oldest
first). Format 1 values (closed inline, no closed key) are still read. A second table maps a
partition number to the repositories on it that have live changes (the tick index).
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from sdlcflow.core.state import ChangeState, RepoState
from sdlcflow.errors import SdlcflowError

FORMAT_VERSION = 2
#: The format before the closed map had its own key: the state whole, closed inline.
INLINE_CLOSED_VERSION = 1
#: Ends the table key of a repository's closed map. A repository's key is its name in UTF-8,
#: where the byte 0xFF never occurs, so no repository's key can look like a closed key.
CLOSED_SUFFIX = b"\xffclosed"

# What the main value keeps of the state: every field but the closed map.
_MAIN_FIELDS = tuple(f.name for f in dataclasses.fields(RepoState) if f.name != "closed")


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
    """A repository's table value: its state and the decisions last made for it.

    `closed_apart` is false for a value read in format 1 with closed changes: its closed map
    is in no closed key yet, so the next write of the repository must write one."""

    state: RepoState
    outbox: tuple[Outbound, ...] = ()
    closed_apart: bool = True


def closed_key(repo_key: bytes) -> bytes:
    """The table key of a repository's closed map."""
    return repo_key + CLOSED_SUFFIX


def repo_of_closed_key(key: bytes) -> bytes | None:
    """The repository key a closed key belongs to; None for a repository's own key."""
    return key[: -len(CLOSED_SUFFIX)] if key.endswith(CLOSED_SUFFIX) else None


class ChangeFragments:
    """The JSON of each live change as last written, reused while the core still shares that
    change object: a batch mostly touches one change of a repository, and encoding the others
    again on every write of its value was most of the encoding. Entries of a repository are
    replaced whenever its value is encoded, so only live changes are kept."""

    def __init__(self) -> None:
        self._by_repo: dict[str, dict[str, tuple[ChangeState, orjson.Fragment]]] = {}

    def of(self, state: RepoState) -> dict[str, orjson.Fragment]:
        known = self._by_repo.get(state.repo, {})
        fresh: dict[str, tuple[ChangeState, orjson.Fragment]] = {}
        for change_id, change in state.changes.items():
            hit = known.get(change_id)
            if hit is None or hit[0] is not change:
                hit = (change, orjson.Fragment(orjson.dumps(change, default=_sorted_set)))
            fresh[change_id] = hit
        if fresh:
            self._by_repo[state.repo] = fresh
        else:
            self._by_repo.pop(state.repo, None)
        return {change_id: fragment for change_id, (_, fragment) in fresh.items()}

    def clear(self) -> None:
        self._by_repo.clear()


def encode_repo(stored: StoredRepo, fragments: ChangeFragments | None = None) -> bytes:
    """The main table value. orjson walks the state's dataclasses, enums and tuples itself (in
    C), giving the same JSON as `RepoState.to_plain` without the closed map, which only names
    the closed map it goes with (`encode_closed` writes that, under `closed_key`). With
    `fragments`, the changes encoded before are reused (the same bytes)."""
    state = stored.state
    plain = {name: getattr(state, name) for name in _MAIN_FIELDS}
    if fragments is not None:
        plain["changes"] = fragments.of(state)
    return orjson.dumps(
        {
            "v": FORMAT_VERSION,
            "state": plain,
            "closed": {"n": len(state.closed), "last": _last_id(state.closed)},
            "outbox": [_encode_outbound(record) for record in stored.outbox],
        },
        default=_sorted_set,
    )


def closed_record(stored: Mapping[str, str] | None, closed: Mapping[str, str]) -> Mapping[str, str]:
    """What a repository's closed key gets when a batch closed changes: the map it held, then
    the new outcomes, none evicted. The value written before still finds all its entries after
    a crash between the two writes, however full the map; `decode_repo` takes the entries each
    value names. (At most `CLOSED_MEMORY` plus one batch's closes.)"""
    if stored is None:
        return closed
    return {**stored, **closed}


def encode_closed(closed: Mapping[str, str]) -> bytes:
    """The value under a repository's closed key: change id -> outcome, oldest first."""
    plain = closed if isinstance(closed, dict) else dict(closed)  # the core builds dicts
    return orjson.dumps({"v": FORMAT_VERSION, "closed": plain})


def _last_id(closed: Mapping[str, str]) -> str | None:
    if not closed:
        return None
    if isinstance(closed, dict):
        last: str = next(reversed(closed))
        return last
    return list(closed)[-1]


def _sorted_set(value: Any) -> list[Any]:
    """Sets (e.g. a change's processed input ids) as sorted lists, as `to_plain` writes them."""
    if isinstance(value, frozenset | set):
        return sorted(value)
    raise TypeError(f"cannot store {type(value).__name__} in a table value")


def decode_repo(data: bytes, closed: bytes | None = None) -> StoredRepo:
    """A repository from its main value and the value of its closed key (None: no such key)."""
    try:
        body = orjson.loads(data)
        state = RepoState.from_plain(_plain_state(body, closed))
        outbox = tuple(_decode_outbound(item) for item in body["outbox"])
    except StorageError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError, SdlcflowError) as exc:
        raise StorageError(f"table value is not a stored repository: {exc}") from exc
    inline = body["v"] == INLINE_CLOSED_VERSION and bool(state.closed)
    return StoredRepo(state, outbox, closed_apart=not inline)


def state_plain(data: bytes, closed: bytes | None = None) -> dict[str, Any]:
    """Only the plain state of a table value and its closed key's value (replay compares these)."""
    return _plain_state(orjson.loads(data), closed)


def _plain_state(body: dict[str, Any], closed: bytes | None) -> dict[str, Any]:
    version = body.get("v")
    plain: dict[str, Any] = body["state"]
    if version == FORMAT_VERSION:
        plain["closed"] = _closed_named(body["closed"], closed)
    elif version != INLINE_CLOSED_VERSION:
        raise StorageError(
            f"table value has format {version!r}, this build reads {INLINE_CLOSED_VERSION} "
            f"and {FORMAT_VERSION}; run the sdlcflow version that wrote it, or rebuild the "
            "table with replay"
        )
    return plain


def _closed_named(mark: dict[str, Any], data: bytes | None) -> dict[str, Any]:
    """The closed map a main value was written with. The closed key is written first, so after
    a crash between the two it may hold more (newer) entries: those are cut off."""
    size, last = mark["n"], mark["last"]
    if last is None:
        return {}
    body = orjson.loads(data) if data is not None else {}
    if body.get("v") != FORMAT_VERSION:
        raise StorageError(f"the closed changes the table value names are missing ({last!r})")
    closed: dict[str, Any] = body["closed"]
    if len(closed) == size and next(reversed(closed)) == last:
        return closed
    if last not in closed:
        raise StorageError(f"the closed changes stored end before {last!r}, which the value names")
    ids = list(closed)
    end = ids.index(last) + 1
    return {change_id: closed[change_id] for change_id in ids[max(0, end - size) : end]}


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
