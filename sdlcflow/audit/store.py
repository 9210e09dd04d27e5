"""Writing audit rows to Cassandra: prepared upserts, bounded async concurrency, retry until acked.

`AuditStore.write` returns only when Cassandra acknowledged every row (True) or the caller
asked to stop (False); the sink commits Kafka offsets only after True. While Cassandra is
unavailable it retries the failed requests with capped exponential backoff, so an outage
delays the audit but loses nothing, and the upserts (keyed by event id, USING TIMESTAMP from
the event time) make the retries and any redelivery harmless.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cassandra import ConsistencyLevel
from cassandra.cluster import Cluster, Session
from cassandra.policies import ExponentialReconnectionPolicy
from cassandra.query import BatchStatement, BatchType, PreparedStatement, Statement

from sdlcflow.audit.tables import TABLES
from sdlcflow.audit.writes import Write
from sdlcflow.errors import SdlcflowError
from sdlcflow.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_MAX_IN_FLIGHT = 128
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
    """Requests in flight, at most `limit` at once; failures are collected for a retry."""

    def __init__(self, limit: int) -> None:
        self._slots = threading.BoundedSemaphore(limit)
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


class AuditStore:
    """Prepared upserts into every audit table; `write` blocks until all are acknowledged.

    Args:
        session: a connected session (see `connect`).
        keyspace: where the audit tables live (migration 0002).
        max_in_flight: requests outstanding at once (the semaphore bound).
        consistency: write consistency; LOCAL_QUORUM is ONE on a single local node.
    """

    def __init__(
        self,
        session: Session,
        keyspace: str,
        *,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        consistency: int = ConsistencyLevel.LOCAL_QUORUM,
    ) -> None:
        if max_in_flight < 1:
            raise AuditStoreError("max_in_flight must be at least 1")
        self.session = session
        self.keyspace = keyspace
        self.max_in_flight = max_in_flight
        self.consistency = consistency
        self.stats = WriteStats()
        self._inserts = self._prepare_all()

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
        """One bound upsert, or an unlogged batch of a single partition's rows."""
        prepared = self._inserts[write.table]
        if len(write.rows) == 1:
            return prepared.bind(write.rows[0].values)
        batch = BatchStatement(batch_type=BatchType.UNLOGGED, consistency_level=self.consistency)
        for row in write.rows:
            batch.add(prepared, row.values)
        return batch

    def write(self, writes: Sequence[Write], stop: threading.Event | None = None) -> bool:
        """Send every write; retry failures with backoff until all are acknowledged.

        Returns False only when `stop` was set before everything was acknowledged.
        """
        stop = stop or threading.Event()
        todo = list(writes)
        delay = BACKOFF_START_S
        while todo:
            failed = self._send(todo)
            if not failed:
                return True
            self._note_failures(failed)
            todo = [write for write, _ in failed]
            if stop.wait(delay):
                return False
            delay = min(BACKOFF_MAX_S, delay * 2)
        return True

    def _send(self, writes: Sequence[Write]) -> list[tuple[Write, BaseException]]:
        flight = _Flight(self.max_in_flight)
        for write in writes:
            flight.submit(self.session, self.statement(write), write)
        flight.wait()
        failed = {id(write) for write, _ in flight.failed}
        for write in writes:
            if id(write) not in failed:
                self.stats.requests += 1
                self.stats.rows += write.events
        return flight.failed

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
