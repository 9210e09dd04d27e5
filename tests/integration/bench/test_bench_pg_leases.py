"""The PostgreSQL baseline's lease table on a real PostgreSQL: SKIP LOCKED, TTL expiry with
fencing epochs, DAG readiness, retries with backoff and dead letters."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest

from sdlcflow.bench.baseline import LEASE_SQL, LEASE_TTL_MS, Lease, LeaseStore, PgCluster

pytestmark = pytest.mark.integration

T0 = 1_000_000
ALL = ("lint", "test", "policy", "approval", "merge", "promote")


@pytest.fixture(scope="module")
def cluster() -> Iterator[PgCluster]:
    pg = PgCluster()
    pg.start()
    try:
        yield pg
    finally:
        pg.stop()


@pytest.fixture
def connect(cluster: PgCluster) -> Iterator[Callable[[], psycopg.Connection[object]]]:
    """Connections to a database of the test's own (no rows shared between tests)."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(cluster.dsn, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    opened: list[psycopg.Connection[object]] = []

    def open_one() -> psycopg.Connection[object]:
        conn = psycopg.connect(cluster.dsn.replace("dbname=postgres", f"dbname={name}"))
        conn.autocommit = True
        opened.append(conn)
        return conn

    yield open_one
    for conn in opened:
        conn.close()


@pytest.fixture
def store(connect: Callable[[], psycopg.Connection[object]]) -> LeaseStore:
    s = LeaseStore(connect())
    s.create_schema()
    return s


def lease_all(store: LeaseStore, now: int, capabilities: tuple[str, ...] = ALL) -> list[Lease]:
    return store.lease("agent-1", capabilities, 100, now)


class TestSkipLocked:
    """Concurrent pollers take different rows instead of waiting on each other."""

    def test_a_second_poller_skips_the_row_a_first_poller_holds(
        self, store: LeaseStore, connect: Callable[[], psycopg.Connection[object]]
    ) -> None:
        store.plan("c1", "r", "bench-fan", T0)  # lint and test are ready
        holder = connect()
        with holder.transaction():
            held = holder.execute(
                LEASE_SQL,
                {"capabilities": list(ALL), "now": T0, "limit": 1, "owner": "a", "ttl": 1000},
            ).fetchall()
            other = LeaseStore(connect())
            other.conn.execute("SET lock_timeout = '2s'")  # a wait here would be the bug
            taken = other.lease("b", ALL, 10, T0)
            assert len(held) == 1 and len(taken) == 1
            assert held[0][1] != taken[0].step


class TestExpiryAndFencing:
    """An expired lease is re-granted with epoch+1; the old holder's result is refused."""

    def test_expired_lease_is_re_leased_and_the_stale_result_rejected(
        self, store: LeaseStore
    ) -> None:
        store.plan("c1", "r", "bench-chain", T0)
        (first,) = lease_all(store, T0)
        assert lease_all(store, T0 + LEASE_TTL_MS - 1) == []  # still live: nobody else gets it
        (second,) = lease_all(store, T0 + LEASE_TTL_MS + 1)
        assert (second.step, second.epoch) == (first.step, first.epoch + 1)
        assert not store.complete(first, T0 + LEASE_TTL_MS + 2, ok=True).accepted
        assert store.complete(second, T0 + LEASE_TTL_MS + 2, ok=True).accepted

    def test_a_result_after_the_ttl_is_refused(self, store: LeaseStore) -> None:
        store.plan("c1", "r", "bench-chain", T0)
        (lease,) = lease_all(store, T0)
        assert not store.complete(lease, T0 + LEASE_TTL_MS + 1, ok=True).accepted


class TestDag:
    """Dependents become ready only when all their needs are done; approval only on REVIEW."""

    def test_fan_in_waits_for_every_need_and_the_change_is_promoted(
        self, store: LeaseStore
    ) -> None:
        store.plan("c1", "r", "bench-fan", T0)
        lint, test = sorted(lease_all(store, T0), key=lambda lease: lease.step)
        store.complete(lint, T0 + 1, ok=True)
        assert lease_all(store, T0 + 2) == []  # policy needs test too
        store.complete(test, T0 + 3, ok=True)
        (policy,) = lease_all(store, T0 + 4)
        assert policy.step == "policy"
        store.complete(policy, T0 + 5, ok=True, review=False)
        (merge,) = lease_all(store, T0 + 6)  # approval skipped without a REVIEW
        assert merge.step == "merge"
        store.complete(merge, T0 + 7, ok=True)
        (promote,) = lease_all(store, T0 + 8)
        assert store.complete(promote, T0 + 9, ok=True).outcome == "ChangePromoted"

    def test_a_review_makes_the_approval_a_task(self, store: LeaseStore) -> None:
        store.plan("c1", "r", "bench-chain", T0)
        (test,) = lease_all(store, T0)
        store.complete(test, T0 + 1, ok=True)
        (policy,) = lease_all(store, T0 + 2)
        store.complete(policy, T0 + 3, ok=True, review=True)
        (approval,) = lease_all(store, T0 + 4)
        assert (approval.step, approval.capability) == ("approval", "approval")


class TestFailures:
    """Failures retry after a backoff and dead-letter the change after max attempts."""

    def test_a_failure_is_retried_after_its_backoff_then_dead_lettered(
        self, store: LeaseStore
    ) -> None:
        store.plan("c1", "r", "bench-chain", T0)
        now = T0
        for attempt in (1, 2):
            (lease,) = lease_all(store, now)
            assert lease.attempt == attempt
            verdict = store.complete(lease, now + 1, ok=False)
            assert verdict.retried
            backoff = 50 * 2 ** (attempt - 1)  # the template's base, doubled per attempt
            assert lease_all(store, now + backoff) == []  # not yet due
            now += backoff + 1
        (last,) = lease_all(store, now)
        verdict = store.complete(last, now + 1, ok=False)
        assert verdict.dead and verdict.outcome == "ChangeFailed"
        assert lease_all(store, now + 10_000) == []
