"""Versioned Cassandra schema migrations: `sdlcflow/migrations/NNNN_name.cql`, applied in
version order, each once, recorded in `<keyspace>.schema_migrations`.

Cassandra has no transactional DDL, so a migration interrupted half-way is re-run whole:
its statements must be idempotent (`IF NOT EXISTS`). A migration whose file changed after it
was applied is reported as drifted, never re-applied: write a new migration instead.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from string import Template

from cassandra.cluster import Session

from sdlcflow.infra.errors import MigrationFailed
from sdlcflow.settings import Settings

_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.cql\Z")
_LINE_COMMENT = re.compile(r"^\s*(--|//).*$", re.MULTILINE)


@dataclass(frozen=True)
class Migration:
    """One migration file: its version, name, statements and a checksum of its text."""

    version: int
    name: str
    statements: tuple[str, ...]
    checksum: str


@dataclass(frozen=True)
class MigrationReport:
    """What a run found and did: applied now, the version reached, files changed since applied."""

    applied: tuple[int, ...]
    version: int | None
    latest: int
    drifted: tuple[int, ...] = ()

    @property
    def pending(self) -> tuple[int, ...]:
        return tuple(v for v in range((self.version or 0) + 1, self.latest + 1))

    def to_json(self) -> dict[str, object]:
        return {
            "applied": list(self.applied),
            "version": self.version,
            "latest": self.latest,
            "drifted": list(self.drifted),
        }


def parse_migration(file_name: str, text: str, settings: Settings) -> Migration:
    """A migration from its file name and text, placeholders filled from `settings`."""
    match = _FILE_NAME.match(file_name)
    if match is None:
        raise MigrationFailed(
            f"migration file {file_name!r} is not named NNNN_snake_case_name.cql; rename it"
        )
    try:
        filled = Template(text).substitute(
            keyspace=settings.keyspace, replication_factor=settings.cassandra_replication_factor
        )
    except (KeyError, ValueError) as exc:
        raise MigrationFailed(
            f"migration {file_name} uses an unknown placeholder {exc}; the known ones are "
            "${keyspace} and ${replication_factor}, and a literal $ is written $$"
        ) from exc
    statements = tuple(s.strip() for s in _LINE_COMMENT.sub("", filled).split(";") if s.strip())
    checksum = hashlib.sha256(text.encode()).hexdigest()
    return Migration(int(match.group(1)), match.group(2), statements, checksum)


def load_migrations(settings: Settings) -> list[Migration]:
    """Every migration shipped in sdlcflow/migrations, in version order, versions unique."""
    folder = resources.files("sdlcflow") / "migrations"
    migrations = [
        parse_migration(entry.name, entry.read_text(), settings)
        for entry in folder.iterdir()
        if entry.name.endswith(".cql")
    ]
    migrations.sort(key=lambda m: m.version)
    versions = [m.version for m in migrations]
    duplicates = sorted({v for v in versions if versions.count(v) > 1})
    if duplicates:
        raise MigrationFailed(f"two migration files share version(s) {duplicates}; renumber one")
    return migrations


def applied_checksums(session: Session, keyspace: str) -> dict[int, str]:
    """Version -> checksum of every recorded migration; empty before the first one ran."""
    table = session.execute(
        "SELECT table_name FROM system_schema.tables WHERE keyspace_name=%s AND table_name=%s",
        (keyspace, "schema_migrations"),
    ).one()
    if table is None:
        return {}
    rows = session.execute(f"SELECT version, checksum FROM {keyspace}.schema_migrations")
    return {int(row.version): str(row.checksum) for row in rows}


def migration_state(session: Session, settings: Settings) -> MigrationReport:
    """Where the schema stands, without changing it."""
    return _report(load_migrations(settings), applied_checksums(session, settings.keyspace), [])


def apply_migrations(session: Session, settings: Settings) -> MigrationReport:
    """Apply every migration not yet recorded, in version order, and record each."""
    known = load_migrations(settings)
    done = applied_checksums(session, settings.keyspace)
    applied: list[int] = []
    for migration in known:
        if migration.version not in done:
            _apply(session, settings.keyspace, migration)
            applied.append(migration.version)
    return _report(known, done, applied)


def _report(known: list[Migration], done: dict[int, str], applied: list[int]) -> MigrationReport:
    versions = set(done) | set(applied)
    return MigrationReport(
        applied=tuple(applied),
        version=max(versions) if versions else None,
        latest=max((m.version for m in known), default=0),
        drifted=tuple(
            m.version for m in known if m.version in done and done[m.version] != m.checksum
        ),
    )


def _apply(session: Session, keyspace: str, migration: Migration) -> None:
    label = f"{migration.version:04d}_{migration.name}.cql"
    for statement in migration.statements:
        if session.keyspace != keyspace and _keyspace_exists(session, keyspace):
            session.set_keyspace(keyspace)  # lets later migrations name tables unqualified
        try:
            session.execute(statement, timeout=60.0)
        except Exception as exc:
            raise MigrationFailed(
                f"migration {label} failed at:\n  {statement}\nwith: {exc}\n"
                "Fix the statement (statements must be idempotent) and run `sdlcflow migrate`"
            ) from exc
    session.execute(
        f"INSERT INTO {keyspace}.schema_migrations (version, name, checksum, applied_at) "
        "VALUES (%s, %s, %s, %s)",
        (migration.version, migration.name, migration.checksum, datetime.now(UTC)),
    )


def _keyspace_exists(session: Session, keyspace: str) -> bool:
    row = session.execute(
        "SELECT keyspace_name FROM system_schema.keyspaces WHERE keyspace_name=%s", (keyspace,)
    ).one()
    return row is not None
