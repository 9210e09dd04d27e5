"""Writing audit rows to Cassandra: prepared upserts, bounded async concurrency, retry until acked.

Rows go as unlogged batches of rows that share their replicas (token-aware), many requests in
flight. `AuditStore.write` (or `send(...).wait()`) returns only when Cassandra acknowledged
every row (True) or the caller asked to stop (False); the sink commits Kafka offsets only after
True. While Cassandra is unavailable it retries the failed requests with capped exponential
backoff, so an outage delays the audit but loses nothing, and the upserts (keyed by event id,
USING TIMESTAMP from the event time) make the retries and any redelivery harmless.
"""

from __future__ import annotations

import io
import logging
import struct
import threading
import time
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cassandra import ConsistencyLevel, InvalidRequest
from cassandra.cluster import Cluster, ResponseFuture, Session
from cassandra.policies import ExponentialReconnectionPolicy
from cassandra.protocol import BatchMessage, ProtocolHandler, write_byte, write_short
from cassandra.query import (
    BatchStatement,
    BatchType,
    BoundStatement,
    PreparedStatement,
    Statement,
)

from sdlcflow.audit.tables import TABLES, TableSpec
from sdlcflow.audit.writes import MAX_BATCH_ROWS, Route, Row, Wire, Write, group_writes
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


class _UnloggedBatchWarnings(logging.Filter):
    """Drops Cassandra's warning that an unlogged batch covers many partitions.

    The store batches rows of many partitions on purpose, all owned by one replica (see
    `AuditStore.route`): Cassandra's advice (a logged batch, or one request per partition) does
    not apply, and the driver logged the warning once for nearly every request.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            record.args
            and isinstance(record.args, tuple)
            and str(record.args[0]).startswith("Unlogged batch covering")
        )


def _quiet_batch_warnings() -> None:
    driver_log = logging.getLogger("cassandra.protocol")
    if not any(isinstance(f, _UnloggedBatchWarnings) for f in driver_log.filters):
        driver_log.addFilter(_UnloggedBatchWarnings())


class _EncodedStatements:
    """A batch's statements as a BATCH message carries them, encoded when their rows were
    built; `AuditStore` gives a `BatchStatement` these in place of its list."""

    __slots__ = ("body", "count")

    def __init__(self, count: int, body: bytes) -> None:
        self.count = count
        self.body = body

    def __len__(self) -> int:
        return self.count


class _EncodedBatchMessage(BatchMessage):  # type: ignore[misc]  # the driver is untyped
    """A BATCH message whose statements are written as they were encoded."""

    def send_body(self, f: io.BytesIO, protocol_version: int) -> None:
        statements: _EncodedStatements = self.queries
        write_byte(f, self.batch_type.value)
        write_short(f, statements.count)
        f.write(statements.body)
        # what follows the statements (consistency, flags, timestamp, keyspace) as the driver
        # writes it after none: after the batch type and a statement count of zero
        tail = io.BytesIO()
        BatchMessage(
            self.batch_type,
            (),
            self.consistency_level,
            self.serial_consistency_level,
            self.timestamp,
            self.keyspace,
        ).send_body(tail, protocol_version)
        f.write(tail.getbuffer()[3:])


def _encoding_batches(handler: type[ProtocolHandler]) -> type[ProtocolHandler]:
    """The session's protocol handler, sending batches of encoded statements as they are.

    The driver's own encoding wrote each value of each row with three calls (11.5 of about
    70 µs per event in the sink's own path); a row's values are encoded once, when it is built
    (`writes.rows_of`). Every other message is encoded by `handler` itself.
    """
    if getattr(handler, "encodes_audit_batches", False):
        return handler

    class AuditProtocolHandler(handler):  # type: ignore[misc,valid-type]
        encodes_audit_batches = True

        @classmethod
        def encode_message(
            cls,
            msg: Any,
            stream_id: int,
            protocol_version: int,
            compressor: Any,
            allow_beta_protocol_version: bool,
        ) -> bytes:
            if isinstance(msg, BatchMessage) and isinstance(msg.queries, _EncodedStatements):
                encoded = _EncodedBatchMessage(
                    msg.batch_type,
                    msg.queries,
                    msg.consistency_level,
                    msg.serial_consistency_level,
                    msg.timestamp,
                    msg.keyspace,
                )
                encoded.tracing = msg.tracing
                encoded.custom_payload = msg.custom_payload
                msg = encoded
            result: bytes = super().encode_message(
                msg, stream_id, protocol_version, compressor, allow_beta_protocol_version
            )
            return result

    return AuditProtocolHandler


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
        self._futures: list[ResponseFuture] = []
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
        self._futures.append(future)

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
        _release(self._futures)
        self._futures = []


def _release(futures: list[ResponseFuture]) -> None:
    """Let finished requests be freed as soon as they are dropped.

    The driver (3.30) keeps a finished request's cancelled timeout timer, whose callback is the
    request itself: a reference cycle that only the cyclic garbage collector breaks, keeping
    every request's statement, rows and callbacks alive until then. The sink's young objects
    were then mostly finished requests, and collecting them cost more than building them.
    """
    for future in futures:
        future._timer = None


def _declared(cql_type: str) -> str:
    """A type as `tables` declares it (the driver names text `varchar`)."""
    return cql_type.replace("varchar", "text")


def _check_markers(spec: TableSpec, prepared: PreparedStatement, keyspace: str) -> None:
    """The prepared upsert takes the types the rows are serialised as, or the sink refuses."""
    declared = dict(spec.columns)
    expected = [declared[name] for name in spec.written] + ["bigint"]
    found = [_declared(column.type.cql_parameterized_type()) for column in prepared.column_metadata]
    if found != expected:
        raise AuditStoreError(
            f"{keyspace}.{spec.name} takes {found} but the audit rows are {expected}; "
            "the table differs from sdlcflow/audit/tables.py: run `sdlcflow migrate` or fix "
            "the table"
        )


def routing_key(partition: Wire | tuple[Wire, ...]) -> bytes:
    """A partition key as the token map hashes it: one column's bytes, or each component with
    its length and a zero byte (the driver's composite form)."""
    if not isinstance(partition, tuple):
        return partition or b""
    return b"".join(
        struct.pack(">H", len(part or b"")) + (part or b"") + b"\x00" for part in partition
    )


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
            self._writes = [part for write, exc in failed for part in _retried(write, exc)]
            if stop.wait(delay):
                return False
            delay = min(BACKOFF_MAX_S, delay * 2)
            self._flight = self._store._submit(self._writes)


def _retried(write: Write, exc: BaseException) -> list[Write]:
    """What to send again for a failed request: the same batch, or its two halves when
    Cassandra refused it as too large (resending it whole would be refused for ever)."""
    if isinstance(exc, InvalidRequest) and "too large" in str(exc) and len(write.rows) > 1:
        middle = len(write.rows) // 2
        return [Write(write.rows[:middle]), Write(write.rows[middle:])]
    return [write]


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
        # how a BATCH message starts each table's statement: prepared, its id, its value count
        self._heads = {
            name: b"\x01"
            + struct.pack(">H", len(statement.query_id))
            + statement.query_id
            + struct.pack(">H", len(TABLES[name].written) + 1)
            for name, statement in self._inserts.items()
        }
        # a batch's keyspace, set with its routing key, as `BatchStatement.add` would
        self._keyspaces = {
            name: BoundStatement(statement).keyspace for name, statement in self._inserts.items()
        }
        session.client_protocol_handler = _encoding_batches(session.client_protocol_handler)
        self._replicas: dict[tuple[str, Any], Hashable] = {}
        _quiet_batch_warnings()

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
            _check_markers(spec, statement, self.keyspace)
            statement.consistency_level = self.consistency
            prepared[spec.name] = statement
        return prepared

    def statement(self, write: Write) -> Statement:
        """One bound upsert, or an unlogged batch of rows that share their replicas.

        A batch's statements are its rows' encoded values behind each table's head, joined
        once: the session's handler (`_encoding_batches`) sends them as they are, the same
        bytes the driver would write. The routing key and keyspace are the first row's, as
        `BatchStatement.add` would take them from its bound statement.
        """
        rows = write.rows
        first = rows[0]
        if len(rows) == 1:
            bound = BoundStatement(self._inserts[first.table])
            bound.values = bound.raw_values = list(first.values)
            return bound
        batch = BatchStatement(batch_type=BatchType.UNLOGGED, consistency_level=self.consistency)
        key, keyspace = routing_key(first.partition), self._keyspaces[first.table]
        if key and keyspace:
            batch.routing_key, batch.keyspace = key, keyspace
        heads = self._heads
        batch._statements_and_parameters = _EncodedStatements(
            len(rows), b"".join([part for row in rows for part in (heads[row.table], row.cells)])
        )
        return batch

    def route(self) -> Route | None:
        """Rows with the same route share a batch: the replica that owns their partition.

        On a one-node cluster every row has the same replica, so any rows may share a batch
        (None); with more nodes the driver's token map names the owner (cached per
        partition), and the batch is sent there by the token-aware policy, so no node
        forwards a mutation.
        """
        metadata = self.session.cluster.metadata
        if len(metadata.all_hosts()) <= 1:
            return None
        if len(self._replicas) > MAX_CACHED_ROUTES:
            self._replicas.clear()

        def owner(row: Row) -> Hashable:
            partition = (row.table, row.partition)
            found = self._replicas.get(partition)
            if found is None:
                replicas = metadata.get_replicas(self.keyspace, routing_key(row.partition))
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
