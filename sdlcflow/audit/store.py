"""Writing audit rows to Cassandra: prepared upserts, bounded async concurrency, retry until acked.

Rows go as unlogged batches of rows that share their replicas (token-aware), many requests in
flight. `AuditStore.write` (or `send(...).wait()`) returns only when Cassandra acknowledged
every row (True) or the caller asked to stop (False); the sink commits Kafka offsets only after
True. While Cassandra is unavailable it retries the failed requests with capped exponential
backoff, so an outage delays the audit but loses nothing, and the upserts (keyed by event id,
USING TIMESTAMP from the event time) make the retries and any redelivery harmless.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cassandra import ConsistencyLevel, cqltypes
from cassandra.cluster import Cluster, Session
from cassandra.marshal import int32_pack, int64_pack
from cassandra.policies import ExponentialReconnectionPolicy
from cassandra.query import (
    BatchStatement,
    BatchType,
    BoundStatement,
    PreparedStatement,
    Statement,
)

from sdlcflow.audit.tables import TABLES
from sdlcflow.audit.writes import MAX_BATCH_ROWS, Route, Row, Write, group_writes
from sdlcflow.errors import SdlcflowError
from sdlcflow.settings import Settings

log = logging.getLogger(__name__)

# requests (each a batch of up to MAX_BATCH_ROWS rows) outstanding at once. The local node
# spends about half the CPU per row with 64 outstanding than with 16 (its request threads wake
# once for many; `benchmarks/audit_bench.py`); 64 x 128 rows stay well inside the write timeout
DEFAULT_MAX_IN_FLIGHT = 64
# partitions whose owning replica is remembered; the cache is dropped when it grows past this
MAX_CACHED_ROUTES = 100_000
BACKOFF_START_S = 0.1
BACKOFF_MAX_S = 5.0


class AuditStoreError(SdlcflowError):
    """The audit store cannot be reached or is not migrated."""


def connect(settings: Settings, *, connect_timeout_s: float = 10.0) -> tuple[Cluster, Session]:
    """A session to the configured Cassandra that reconnects quickly after an outage."""
    from sdlcflow.infra.cassandra_node import cluster_for

    cluster = cluster_for(settings, connect_timeout_s=connect_timeout_s)
    # the default reconnection backs off to 10 minutes: the audit must catch up within seconds
    cluster.reconnection_policy = ExponentialReconnectionPolicy(0.5, 5.0)
    try:
        session = cluster.connect()
    except Exception as exc:
        cluster.shutdown()
        raise AuditStoreError(
            f"cannot reach Cassandra at {', '.join(settings.cassandra_hosts)}:"
            f"{settings.cassandra_port} ({type(exc).__name__}: {exc}); run `sdlcflow up` or set "
            "SDLCFLOW_CASSANDRA_HOSTS"
        ) from exc
    return cluster, session


@dataclass
class WriteStats:
    """What the store did: requests and rows acknowledged, requests retried."""

    requests: int = 0
    rows: int = 0
    retries: int = 0
    failures_by_kind: dict[str, int] = field(default_factory=dict)


class _Flight:
    """Requests of one write in flight; `slots` bounds requests across all writes at once."""

    def __init__(self, slots: threading.BoundedSemaphore) -> None:
        self._slots = slots
        self._done = threading.Condition()
        self._pending = 0
        self.failed: list[tuple[Write, BaseException]] = []

    def submit(self, session: Session, statement: Statement, write: Write) -> None:
        self._slots.acquire()
        with self._done:
            self._pending += 1
        try:
            future = session.execute_async(statement)
        except Exception as exc:  # e.g. NoHostAvailable raised before the request is queued
            self._finish(write, exc)
            return
        future.add_callbacks(self._ok, self._err, errback_args=(write,))

    def _ok(self, _rows: Any) -> None:
        self._finish(None, None)

    def _err(self, exc: BaseException, write: Write) -> None:
        self._finish(write, exc)

    def _finish(self, write: Write | None, exc: BaseException | None) -> None:
        with self._done:
            if write is not None and exc is not None:
                self.failed.append((write, exc))
            self._pending -= 1
            self._done.notify_all()
        self._slots.release()

    def wait(self) -> None:
        with self._done:
            while self._pending:
                self._done.wait()


Serialize = Callable[[Any], bytes]


class Binder:
    """Binds rows to one prepared upsert, serialising each column with a precomputed function.

    The driver's `PreparedStatement.bind` looks up encryption policy and column descriptors
    for every value and reaches an int timestamp only through two caught AttributeErrors;
    binding was most of the sink's CPU. Values are serialised here exactly as the driver's
    column types do, into `BoundStatement.values`, for the common types of the audit tables;
    every other type goes through the driver's own serializer.
    """

    def __init__(self, prepared: PreparedStatement) -> None:
        self.prepared = prepared
        version = prepared.protocol_version
        self._serializers = tuple(
            _serializer(column.type, version) for column in prepared.column_metadata
        )

    def bind(self, values: Sequence[Any]) -> BoundStatement:
        bound = BoundStatement(self.prepared)
        bound.raw_values = values
        bound.values = self.serialize(values)
        return bound

    def serialize(self, values: Sequence[Any]) -> list[bytes | None]:
        """The values as the protocol sends them, in marker order."""
        if len(values) != len(self._serializers):
            raise AuditStoreError(
                f"{len(values)} values for {len(self._serializers)} markers of "
                f"{self.prepared.query_string!r}; the row and the table spec disagree"
            )
        return [
            None if value is None else serialize(value)
            for serialize, value in zip(self._serializers, values, strict=True)
        ]


def _serializer(column_type: Any, version: int) -> Serialize:
    if column_type in (cqltypes.UTF8Type, cqltypes.VarcharType):
        return str.encode  # utf-8
    if column_type is cqltypes.BytesType:
        return bytes
    if column_type is cqltypes.Int32Type:
        return int32_pack  # type: ignore[no-any-return]
    if column_type is cqltypes.LongType:
        return int64_pack  # type: ignore[no-any-return]
    if column_type in (cqltypes.DateType, cqltypes.TimestampType):
        return _timestamp
    serialize = column_type.serialize
    if column_type is cqltypes.SimpleDateType:
        # a day bucket: few distinct values, each converted once
        return functools.lru_cache(maxsize=1024)(lambda day: serialize(day, version))
    return lambda value: serialize(value, version)  # type: ignore[no-any-return]


def _timestamp(value: Any) -> bytes:
    """ms since the epoch (as the sink writes them) or a naive-UTC datetime, as DateType does."""
    if type(value) is int:
        return int64_pack(value)  # type: ignore[no-any-return]
    return _hour(value)


@functools.lru_cache(maxsize=1024)
def _hour(value: Any) -> bytes:
    """An hour bucket (naive-UTC datetime): few distinct values, each converted once."""
    return cqltypes.DateType.serialize(value, 5)  # type: ignore[no-any-return]


class PendingWrite:
    """Rows sent to Cassandra whose acknowledgements are still to come.

    The sink prepares its next batch while this one is in flight; `wait` then blocks until
    every row is acknowledged, retrying failed requests with capped exponential backoff.
    """

    def __init__(self, store: AuditStore, writes: Sequence[Write]) -> None:
        self._store = store
        self._writes = list(writes)
        self._flight = store._submit(self._writes)

    def wait(self, stop: threading.Event | None = None) -> bool:
        """True once all rows are acknowledged; False if `stop` was set before that."""
        stop = stop or threading.Event()
        delay = BACKOFF_START_S
        while True:
            self._flight.wait()
            failed = self._flight.failed
            self._store._note_done(self._writes, failed)
            if not failed:
                return True
            self._writes = [write for write, _ in failed]
            if stop.wait(delay):
                return False
            delay = min(BACKOFF_MAX_S, delay * 2)
            self._flight = self._store._submit(self._writes)


class AuditStore:
    """Prepared upserts into every audit table, sent as token-aware unlogged batches.

    Args:
        session: a connected session (see `connect`).
        keyspace: where the audit tables live (migration 0002).
        max_in_flight: requests outstanding at once, over all pending writes.
        consistency: write consistency; LOCAL_QUORUM is ONE on a single local node.
        max_batch_rows: rows per request (one unlogged batch).
    """

    def __init__(
        self,
        session: Session,
        keyspace: str,
        *,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        consistency: int = ConsistencyLevel.LOCAL_QUORUM,
        max_batch_rows: int = MAX_BATCH_ROWS,
    ) -> None:
        if max_in_flight < 1:
            raise AuditStoreError("max_in_flight must be at least 1")
        if max_batch_rows < 1:
            raise AuditStoreError("max_batch_rows must be at least 1")
        self.session = session
        self.keyspace = keyspace
        self.max_in_flight = max_in_flight
        self.max_batch_rows = max_batch_rows
        self.consistency = consistency
        self.stats = WriteStats()
        self._slots = threading.BoundedSemaphore(max_in_flight)
        self._inserts = self._prepare_all()
        self._binders = {name: Binder(statement) for name, statement in self._inserts.items()}
        self._replicas: dict[tuple[str, tuple[Any, ...]], Hashable] = {}

    def _prepare_all(self) -> dict[str, PreparedStatement]:
        prepared: dict[str, PreparedStatement] = {}
        for spec in TABLES.values():
            try:
                statement = self.session.prepare(spec.insert_cql(self.keyspace))
            except Exception as exc:
                raise AuditStoreError(
                    f"cannot prepare the upsert into {self.keyspace}.{spec.name} "
                    f"({type(exc).__name__}: {exc}); run `sdlcflow migrate` to create the "
                    "audit tables"
                ) from exc
            statement.consistency_level = self.consistency
            prepared[spec.name] = statement
        return prepared

    def statement(self, write: Write) -> Statement:
        """One bound upsert, or an unlogged batch of rows that share their replicas."""
        binders = self._binders
        if len(write.rows) == 1:
            row = write.rows[0]
            return binders[row.table].bind(row.values)
        batch = BatchStatement(batch_type=BatchType.UNLOGGED, consistency_level=self.consistency)
        first, *rest = write.rows
        batch.add(binders[first.table].bind(first.values))  # names the batch's routing key
        # the other rows go in as `add` would put them, without a BoundStatement each (building
        # the statements of an event's rows: 33 -> 25 µs of CPU)
        entries = batch._statements_and_parameters
        for row in rest:
            binder = binders[row.table]
            entries.append((True, binder.prepared.query_id, binder.serialize(row.values)))
        return batch

    def route(self) -> Route:
        """Rows with the same route share a batch: the replica that owns their partition.

        On a one-node cluster every row has the same replica, so any rows may share a batch;
        with more nodes the driver's token map names the owner (cached per partition), and
        the batch is sent there by the token-aware policy, so no node forwards a mutation.
        """
        metadata = self.session.cluster.metadata
        if len(metadata.all_hosts()) <= 1:
            return _one_replica
        if len(self._replicas) > MAX_CACHED_ROUTES:
            self._replicas.clear()

        def owner(row: Row) -> Hashable:
            partition = (row.table, row.partition)
            found = self._replicas.get(partition)
            if found is None:
                key = self._binders[row.table].bind(row.values).routing_key
                replicas = metadata.get_replicas(self.keyspace, key)
                found = self._replicas[partition] = replicas[0].endpoint if replicas else ""
            return found

        return owner

    def send(self, rows: Sequence[Row]) -> PendingWrite:
        """Send every row now; the returned handle waits for (and retries) the acks."""
        return PendingWrite(
            self, group_writes(rows, route=self.route(), max_rows=self.max_batch_rows)
        )

    def write(self, rows: Sequence[Row], stop: threading.Event | None = None) -> bool:
        """Send every row and block until all are acknowledged, retrying failures.

        Returns False only when `stop` was set before everything was acknowledged.
        """
        return self.send(rows).wait(stop)

    def _submit(self, writes: Sequence[Write]) -> _Flight:
        flight = _Flight(self._slots)
        for write in writes:
            flight.submit(self.session, self.statement(write), write)
        return flight

    def _note_done(
        self, writes: Sequence[Write], failed: list[tuple[Write, BaseException]]
    ) -> None:
        not_acked = {id(write) for write, _ in failed}
        for write in writes:
            if id(write) not in not_acked:
                self.stats.requests += 1
                self.stats.rows += write.events
        if failed:
            self._note_failures(failed)

    def _note_failures(self, failed: list[tuple[Write, BaseException]]) -> None:
        self.stats.retries += len(failed)
        kinds: dict[str, int] = {}
        for _, exc in failed:
            kind = type(exc).__name__
            kinds[kind] = kinds.get(kind, 0) + 1
            self.stats.failures_by_kind[kind] = self.stats.failures_by_kind.get(kind, 0) + 1
        first = failed[0][1]
        log.warning(
            "%d audit writes not acknowledged (%s), retrying; first: %s",
            len(failed),
            ", ".join(f"{k}={v}" for k, v in sorted(kinds.items())),
            first,
        )


def _one_replica(_row: Row) -> Hashable:
    return None


def connect_when_up(
    settings: Settings, stop: threading.Event, *, timeout_s: float | None
) -> tuple[Cluster, Session] | None:
    """Connect, waiting for Cassandra if it is not up yet; None if `stop` was set first."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    delay = BACKOFF_START_S
    while not stop.is_set():
        try:
            return connect(settings, connect_timeout_s=5.0)
        except AuditStoreError as exc:
            if deadline is not None and time.monotonic() > deadline:
                raise
            log.warning("audit store not reachable yet, retrying: %s", exc)
        stop.wait(delay)
        delay = min(BACKOFF_MAX_S, delay * 2)
    return None
