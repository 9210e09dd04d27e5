"""Reading the audit store back: one single-partition query per bucket, run concurrently.

Every analyst question maps onto one table; a time window is cut into the table's buckets
(days, hours or months, see `windows`) and each bucket is one partition read. Index tables hold
keys only (see `tables.TableSpec.written`): their events are then read by id, concurrently.
"""

from __future__ import annotations

import calendar
import functools
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any

import orjson
from cassandra.cluster import Session
from cassandra.concurrent import execute_concurrent_with_args
from cassandra.query import PreparedStatement

from sdlcflow.audit import windows
from sdlcflow.audit.model import AuditRow
from sdlcflow.audit.rows import render_json
from sdlcflow.audit.tables import COMMON_COLUMNS
from sdlcflow.errors import SdlcflowError
from sdlcflow.streams.codec import DecodeError
from sdlcflow.streams.wire import EventCodec

_COMMON = {name for name, _ in COMMON_COLUMNS}
DEFAULT_CONCURRENCY = 32


class AuditQueryError(SdlcflowError):
    """An audit query failed; the message names the table and the cause."""


def to_ms(value: Any) -> int:
    """A timestamp column (naive UTC datetime from the driver) as ms since the epoch."""
    if isinstance(value, datetime):
        return calendar.timegm(value.utctimetuple()) * 1000 + value.microsecond // 1000
    return int(value or 0)


def audit_row(record: Any, body: Any | None = None) -> AuditRow:
    """An AuditRow from a driver row (named tuple) of any audit table.

    An index row holds only its keys and its own columns; `body` is then the event's
    `events_by_id` row, which supplies the shared columns. A row written whole needs no body.
    """
    values = record._asdict()
    extra = {k: v for k, v in values.items() if k not in _COMMON}
    if body is not None:
        values = body._asdict()
    return AuditRow(
        event_id=values["event_id"],
        event_type=values["event_type"] or "",
        occurred_at=to_ms(values["occurred_at"]),
        repo=values["repo"] or "",
        change_id=values["change_id"],
        task_id=values["task_id"],
        trace_id=values["trace_id"] or "",
        causation_id=values["causation_id"],
        actor_kind=values["actor_kind"] or "",
        actor_id=values["actor_id"] or "",
        outcome=values["outcome"] or "",
        before_sha=values["before_sha"],
        after_sha=values["after_sha"],
        topic=values["kafka_topic"] or "",
        partition=values["kafka_partition"] or 0,
        offset=values["kafka_offset"] or 0,
        json=values["json"] or rendered(values["avro"]),
        avro=bytes(values["avro"] or b""),
        extra=extra,
    )


@functools.cache
def _codec() -> EventCodec:
    return EventCodec()


def rendered(avro: bytes | None) -> str:
    """The JSON of an event stored as Avro bytes (the sink stores no JSON; older rows hold it).

    Bytes that no longer decode are rendered as a document naming why, never dropped."""
    if not avro:
        return ""
    try:
        return render_json(_codec().decode(bytes(avro)))
    except DecodeError as exc:
        return orjson.dumps({"undecodable": exc.reason.value, "detail": exc.detail}).decode()


def is_index_only(record: Any) -> bool:
    """Whether a driver row is an index entry whose body lives in `events_by_id`."""
    return record.json is None and record.avro is None


class AuditReader:
    """The analyst's queries over the audit tables."""

    def __init__(
        self, session: Session, keyspace: str, *, concurrency: int = DEFAULT_CONCURRENCY
    ) -> None:
        self.session = session
        self.keyspace = keyspace
        self.concurrency = concurrency
        self._prepared: dict[str, PreparedStatement] = {}

    def _statement(self, table: str, where: str) -> PreparedStatement:
        cql = f"SELECT * FROM {self.keyspace}.{table} WHERE {where}"
        if cql not in self._prepared:
            try:
                self._prepared[cql] = self.session.prepare(cql)
            except Exception as exc:
                raise AuditQueryError(
                    f"cannot query {self.keyspace}.{table} ({type(exc).__name__}: {exc}); "
                    "run `sdlcflow migrate` if the audit tables are missing"
                ) from exc
        return self._prepared[cql]

    def _run(
        self,
        table: str,
        where: str,
        params: Sequence[tuple[Any, ...]],
        keep: Callable[[Any], bool] | None = None,
    ) -> list[AuditRow]:
        """The rows of `table` matching `where` for each of `params` (and `keep`), with bodies."""
        records = self._fetch(table, where, params)
        if keep is not None:
            records = [r for r in records if keep(r)]
        index_only = [r.event_id for r in records if is_index_only(r)]
        bodies = self._bodies(index_only) if index_only else {}
        rows: list[AuditRow] = []
        for record in records:
            if not is_index_only(record):
                rows.append(audit_row(record))
            elif record.event_id in bodies:  # visible once its body is stored
                rows.append(audit_row(record, bodies[record.event_id]))
        rows.sort(key=lambda r: (r.occurred_at, r.event_id))
        return rows

    def _fetch(self, table: str, where: str, params: Sequence[tuple[Any, ...]]) -> list[Any]:
        statement = self._statement(table, where)
        results = execute_concurrent_with_args(
            self.session, statement, list(params), concurrency=self.concurrency
        )
        records: list[Any] = []
        for ok, result in results:
            if not ok:
                raise AuditQueryError(f"query on {self.keyspace}.{table} failed: {result}")
            records += list(result)
        return records

    def _bodies(self, event_ids: Sequence[str]) -> dict[str, Any]:
        """The `events_by_id` rows of index entries, read concurrently by id."""
        unique = list(dict.fromkeys(event_ids))
        found = self._fetch("events_by_id", "event_id = ?", [(i,) for i in unique])
        return {record.event_id: record for record in found}

    def by_id(self, event_id: str) -> AuditRow | None:
        rows = self._run("events_by_id", "event_id = ?", [(event_id,)])
        return rows[0] if rows else None

    def by_trace(self, trace_id: str) -> list[AuditRow]:
        """Events without a change from the trace's partition, the rest from its changes'."""
        return self._through_changes("trace_id", trace_id, "events_by_trace", "changes_by_trace")

    def by_change(self, change_id: str) -> list[AuditRow]:
        return self._run("events_by_change", "change_id = ?", [(change_id,)])

    def by_task(self, task_id: str) -> list[AuditRow]:
        """Events without a change from the task's partition, the rest from its change's."""
        return self._through_changes("task_id", task_id, "events_by_task", "changes_by_task")

    def _through_changes(self, column: str, value: str, own: str, lookup: str) -> list[AuditRow]:
        """A trace's or task's events: its own partition (events without a change, and every
        event written before migration 0003) plus its changes' rows that name it."""
        rows = self._run(own, f"{column} = ?", [(value,)])
        changes = [r.change_id for r in self._fetch(lookup, f"{column} = ?", [(value,)])]
        if changes:
            rows += self._run(
                "events_by_change",
                "change_id = ?",
                [(change,) for change in changes],
                keep=lambda record: getattr(record, column) == value,
            )
        unique = {row.event_id: row for row in rows}
        return sorted(unique.values(), key=lambda r: (r.occurred_at, r.event_id))

    def _by_day(
        self, table: str, key: str, value: str, since_ms: int, until_ms: int
    ) -> list[AuditRow]:
        where = f"{key} = ? AND day = ? AND occurred_at >= ? AND occurred_at < ?"
        params = [(value, d, since_ms, until_ms) for d in windows.days(since_ms, until_ms)]
        return self._run(table, where, params)

    def by_repo(self, repo: str, since_ms: int, until_ms: int) -> list[AuditRow]:
        return self._by_day("events_by_repo_day", "repo", repo, since_ms, until_ms)

    def by_actor(self, actor_id: str, since_ms: int, until_ms: int) -> list[AuditRow]:
        return self._by_day("events_by_actor_day", "actor_id", actor_id, since_ms, until_ms)

    def by_policy(self, policy: str, since_ms: int, until_ms: int) -> list[AuditRow]:
        return self._by_day("policy_decisions_by_policy_day", "policy", policy, since_ms, until_ms)

    def by_reviewer(self, reviewer: str, since_ms: int, until_ms: int) -> list[AuditRow]:
        where = "reviewer = ? AND month = ? AND occurred_at >= ? AND occurred_at < ?"
        params = [(reviewer, m, since_ms, until_ms) for m in windows.months(since_ms, until_ms)]
        return self._run("approvals_by_reviewer_month", where, params)

    def dead_letters(self, since_ms: int, until_ms: int) -> list[AuditRow]:
        where = "day = ? AND occurred_at >= ? AND occurred_at < ?"
        params: list[tuple[Any, ...]] = [
            (d, since_ms, until_ms) for d in windows.days(since_ms, until_ms)
        ]
        return self._run("dead_letters_by_day", where, params)

    def by_types(self, types: Sequence[str], since_ms: int, until_ms: int) -> list[AuditRow]:
        """Every event of the given types in the window (the report's input)."""
        return [row for chunk in self.iter_types(types, since_ms, until_ms) for row in chunk]

    def iter_types(
        self, types: Sequence[str], since_ms: int, until_ms: int
    ) -> Iterator[list[AuditRow]]:
        """Events of the given types, one time-ordered list per hour (bounded memory)."""
        where = "event_type = ? AND hour = ? AND occurred_at >= ? AND occurred_at < ?"
        for hour in windows.hours(since_ms, until_ms):
            params = [(t, hour, since_ms, until_ms) for t in types]
            yield self._run("events_by_type_hour", where, params)
