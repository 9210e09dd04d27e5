"""Schema migrations against the real Cassandra: applied once each, in order, recorded, and
a file changed after it was applied is reported instead of re-run."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator

import pytest
from cassandra.cluster import Session

from sdlcflow.infra.local import cql_session
from sdlcflow.infra.migrations import apply_migrations, load_migrations, migration_state
from sdlcflow.settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture
def fresh_keyspace(settings: Settings, unique_name: Callable[[str], str]) -> Iterator[Settings]:
    """Settings naming a keyspace that does not exist yet; dropped afterwards."""
    fresh = dataclasses.replace(settings, keyspace=unique_name("migrations"))
    yield fresh
    with cql_session(settings) as session:
        session.execute(f"DROP KEYSPACE IF EXISTS {fresh.keyspace}", timeout=60)


@pytest.fixture
def session(fresh_keyspace: Settings) -> Iterator[Session]:
    with cql_session(fresh_keyspace) as opened:
        yield opened


class TestApplyMigrations:
    """apply_migrations brings an empty cluster to the latest version exactly once."""

    def test_a_fresh_keyspace_gets_every_migration_in_order_and_a_second_run_applies_none(
        self, fresh_keyspace: Settings, session: Session
    ) -> None:
        versions = tuple(m.version for m in load_migrations(fresh_keyspace))

        first = apply_migrations(session, fresh_keyspace)
        second = apply_migrations(session, fresh_keyspace)

        assert first.applied == versions
        assert first.version == versions[-1]
        assert second.applied == ()
        assert second.version == versions[-1]
        assert second.pending == ()
        recorded = session.execute(
            f"SELECT version, name FROM {fresh_keyspace.keyspace}.schema_migrations"
        )
        assert sorted(row.version for row in recorded) == list(versions)

    def test_a_migration_changed_after_it_was_applied_is_reported_and_not_rerun(
        self, fresh_keyspace: Settings, session: Session
    ) -> None:
        apply_migrations(session, fresh_keyspace)
        session.execute(
            f"UPDATE {fresh_keyspace.keyspace}.schema_migrations SET checksum = 'edited' "
            "WHERE version = 1"
        )

        state = migration_state(session, fresh_keyspace)
        again = apply_migrations(session, fresh_keyspace)

        assert state.drifted == (1,)
        assert again.applied == ()
        assert again.drifted == (1,)

    def test_the_state_of_an_unmigrated_keyspace_is_no_version_and_everything_pending(
        self, fresh_keyspace: Settings, session: Session
    ) -> None:
        state = migration_state(session, fresh_keyspace)

        assert state.version is None
        assert state.pending == tuple(m.version for m in load_migrations(fresh_keyspace))
