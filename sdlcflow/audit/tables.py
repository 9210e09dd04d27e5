"""The audit tables, one per query, as the code writes and reads them.

`events_by_id` holds each event whole (its Avro bytes); every other table is an index (key
columns and its own filter columns) that readers join back to `events_by_id` (see
`TableSpec.written`).

An event of a change is indexed once in its change's partition, which also names its trace and
task; two key-only lookups (`changes_by_trace`, `changes_by_task`) lead a trace or a task to
its changes. Events of one change share its lookups, so one poll writes each lookup row once
(`writes.group_writes` drops repeats): about five rows per event instead of seven. Only events
without a change go to `events_by_trace` / `events_by_task` (and every event did before
migration 0003; readers read both).

`sdlcflow/migrations/0002_audit_tables.cql` and `0003_change_lookups.cql` create them; a unit
test checks those files against these specs so the two cannot drift. Partitions are bounded:
keys that grow without end (a repository, an actor, a policy, dead letters, an event type) are
bucketed by time.
"""

from __future__ import annotations

from dataclasses import dataclass

# Columns every table has: the whole event (its Avro bytes) and what analysts filter on.
COMMON_COLUMNS: tuple[tuple[str, str], ...] = (
    ("event_id", "text"),
    ("event_type", "text"),
    ("occurred_at", "timestamp"),
    ("repo", "text"),
    ("change_id", "text"),
    ("task_id", "text"),
    ("trace_id", "text"),
    ("causation_id", "text"),
    ("actor_kind", "text"),
    ("actor_id", "text"),
    ("outcome", "text"),
    ("before_sha", "text"),
    ("after_sha", "text"),
    ("kafka_topic", "text"),
    ("kafka_partition", "int"),
    ("kafka_offset", "bigint"),
    ("avro", "blob"),
    ("json", "text"),
)

# Columns rows written before the sink stopped rendering JSON still carry; no longer written.
# The event's JSON is rendered from its Avro bytes when it is read (`queries.audit_row`): it
# was a third of an event's bytes and about a sixth of Cassandra's CPU per event.
READ_ONLY_COLUMNS = ("json",)

# Clustering of every time-ordered table: oldest first, the event id breaks ties.
TIME_CLUSTERING = ("occurred_at", "event_id")


@dataclass(frozen=True)
class TableSpec:
    """One query table: its partition key, clustering and the columns beyond the common ones."""

    name: str
    partition_key: tuple[str, ...]
    clustering: tuple[str, ...]
    extra_columns: tuple[tuple[str, str], ...] = ()
    doc: str = ""
    whole_event: bool = False  # the table that holds every column, the event's body included
    # common columns an index row writes beyond its key (events_by_change: trace and task)
    also_written: tuple[str, ...] = ()
    lookup: bool = False  # a key-only table leading to changes: no common columns, no event id

    @property
    def columns(self) -> tuple[tuple[str, str], ...]:
        if self.lookup:
            return self.extra_columns
        return COMMON_COLUMNS + self.extra_columns

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.columns)

    @property
    def written(self) -> tuple[str, ...]:
        """The columns the sink writes, in bind order.

        Only the whole-event table gets every column (but the read-only ones); an index table
        gets its primary key and its own columns, and readers fetch the rest by event id. That
        keeps the six or so rows of an event small: most of an event's bytes (its Avro) are
        written once, not seven times. Rows written before this change carry every column and
        are read as they are.
        """
        if self.whole_event:
            return tuple(n for n in self.column_names if n not in READ_ONLY_COLUMNS)
        names = (
            self.partition_key
            + self.clustering
            + tuple(n for n, _ in self.extra_columns)
            + self.also_written
        )
        return tuple(dict.fromkeys(names))

    def insert_cql(self, keyspace: str) -> str:
        """The prepared upsert; the last marker is the write timestamp (from the event time)."""
        names = self.written
        return (
            f"INSERT INTO {keyspace}.{self.name} ({', '.join(names)}) "
            f"VALUES ({', '.join('?' for _ in names)}) USING TIMESTAMP ?"
        )


_DAY = (("day", "date"),)

TABLES: dict[str, TableSpec] = {
    spec.name: spec
    for spec in (
        TableSpec(
            "events_by_id", ("event_id",), (), doc="lookup and dedupe by event id", whole_event=True
        ),
        TableSpec(
            "events_by_trace",
            ("trace_id",),
            TIME_CLUSTERING,
            doc="one trace's timeline (events of a change: see changes_by_trace)",
        ),
        TableSpec(
            "events_by_change",
            ("change_id",),
            TIME_CLUSTERING,
            doc="one change's life, naming each event's trace and task",
            also_written=("trace_id", "task_id"),
        ),
        TableSpec(
            "events_by_task",
            ("task_id",),
            TIME_CLUSTERING,
            doc="one task's attempts (events of a change: see changes_by_task)",
        ),
        TableSpec(
            "changes_by_trace",
            ("trace_id",),
            ("change_id",),
            (("trace_id", "text"), ("change_id", "text")),
            "the changes a trace ran through: their partitions hold the trace's events",
            lookup=True,
        ),
        TableSpec(
            "changes_by_task",
            ("task_id",),
            ("change_id",),
            (("task_id", "text"), ("change_id", "text")),
            "the change a task belongs to: its partition holds the task's events",
            lookup=True,
        ),
        TableSpec(
            "events_by_repo_day", ("repo", "day"), TIME_CLUSTERING, _DAY, "a repository's day"
        ),
        TableSpec(
            "events_by_actor_day", ("actor_id", "day"), TIME_CLUSTERING, _DAY, "an actor's day"
        ),
        # hourly: the report and export read whole types, and heartbeats are many
        TableSpec(
            "events_by_type_hour",
            ("event_type", "hour"),
            TIME_CLUSTERING,
            (("hour", "timestamp"),),
            "every event of one type in one hour (report, export)",
        ),
        TableSpec(
            "policy_decisions_by_policy_day",
            ("policy", "day"),
            TIME_CLUSTERING,
            (
                ("policy", "text"),
                ("day", "date"),
                ("decision", "text"),
                ("enforced", "boolean"),
                ("policy_revision", "text"),
                ("evidence_digest", "text"),
                ("reasons", "list<text>"),
            ),
            "a policy's decisions and mode changes per day",
        ),
        TableSpec(
            "approvals_by_reviewer_month",
            ("reviewer", "month"),
            TIME_CLUSTERING,
            (("reviewer", "text"), ("month", "text")),
            "a reviewer's signatures, counted approvals and invalidations per month",
        ),
        TableSpec(
            "dead_letters_by_day",
            ("day",),
            TIME_CLUSTERING,
            (
                ("day", "date"),
                ("reason", "text"),
                ("detail", "text"),
                ("origin_topic", "text"),
                ("origin_partition", "int"),
                ("origin_offset", "bigint"),
                ("consumer_group", "text"),
            ),
            "refused messages per day, with their raw bytes inside the event",
        ),
    )
}
