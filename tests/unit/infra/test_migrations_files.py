"""Migration files: named NNNN_name.cql, placeholders filled, statements split, order unique."""

from __future__ import annotations

import dataclasses

import pytest

from sdlcflow.infra.errors import MigrationFailed
from sdlcflow.infra.migrations import MigrationReport, load_migrations, parse_migration
from sdlcflow.settings import Settings


@pytest.fixture
def settings() -> Settings:
    return dataclasses.replace(
        Settings.from_env(), keyspace="ks_test", cassandra_replication_factor=3
    )


class TestParseMigration:
    """A file becomes its version, name, filled statements and a checksum of its text."""

    def test_statements_are_split_comments_dropped_and_placeholders_filled(
        self, settings: Settings
    ) -> None:
        text = (
            "-- a comment; with a semicolon\n"
            "CREATE KEYSPACE IF NOT EXISTS ${keyspace}\n"
            "  WITH replication = {'class': 'SimpleStrategy', "
            "'replication_factor': ${replication_factor}};\n"
            "// another comment\n"
            "CREATE TABLE IF NOT EXISTS ${keyspace}.t (id int PRIMARY KEY);\n"
        )

        migration = parse_migration("0007_add_t.cql", text, settings)

        assert (migration.version, migration.name) == (7, "add_t")
        assert migration.statements == (
            "CREATE KEYSPACE IF NOT EXISTS ks_test\n  WITH replication = "
            "{'class': 'SimpleStrategy', 'replication_factor': 3}",
            "CREATE TABLE IF NOT EXISTS ks_test.t (id int PRIMARY KEY)",
        )

    def test_the_checksum_changes_with_the_text(self, settings: Settings) -> None:
        one = parse_migration("0002_a.cql", "SELECT 1;", settings)
        two = parse_migration("0002_a.cql", "SELECT 2;", settings)

        assert one.checksum != two.checksum

    def test_a_badly_named_file_is_refused_with_the_naming_rule(self, settings: Settings) -> None:
        with pytest.raises(MigrationFailed, match=r"NNNN_snake_case_name\.cql"):
            parse_migration("2_Add-Table.cql", "SELECT 1;", settings)

    def test_an_unknown_placeholder_is_refused_with_the_known_ones(
        self, settings: Settings
    ) -> None:
        with pytest.raises(MigrationFailed, match="keyspace"):
            parse_migration("0003_x.cql", "CREATE TABLE ${table} (id int PRIMARY KEY);", settings)


class TestShippedMigrations:
    """The migrations shipped with sdlcflow start with the keyspace and have unique versions."""

    def test_versions_are_unique_ascending_and_start_with_the_keyspace(
        self, settings: Settings
    ) -> None:
        migrations = load_migrations(settings)
        versions = [m.version for m in migrations]

        assert versions == sorted(set(versions))
        assert versions[0] == 1
        assert migrations[0].statements[0].startswith("CREATE KEYSPACE IF NOT EXISTS ks_test")
        assert any("schema_migrations" in s for s in migrations[0].statements)


class TestMigrationReport:
    """Pending versions are those after the applied version up to the latest."""

    def test_pending_runs_from_the_version_after_the_current_to_the_latest(self) -> None:
        assert MigrationReport(applied=(), version=None, latest=3).pending == (1, 2, 3)
        assert MigrationReport(applied=(), version=2, latest=3).pending == (3,)
        assert MigrationReport(applied=(), version=3, latest=3).pending == ()
