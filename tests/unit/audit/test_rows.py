"""An event becomes the same audit rows every time, in exactly the query tables it belongs to."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, date, datetime
from importlib import resources
from typing import Any

import orjson
from cassandra import cqltypes
from cql_types import DRIVER_TYPES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sdlcflow.audit import cql
from sdlcflow.audit.rows import (
    ALL_POLICIES,
    POLICY_TYPES,
    AuditRecord,
    Origin,
    audit_record,
    event_time,
    outcome_of,
    placements,
    policy_names,
    render_json,
    reviewers,
    shas,
    write_time,
)
from sdlcflow.audit.tables import COMMON_COLUMNS, READ_ONLY_COLUMNS, TABLES
from sdlcflow.audit.writes import WRITE_TIMESTAMP, Row, group_writes, rows_of, shared_columns
from sdlcflow.core.events import (
    Actor,
    ActorKind,
    ApprovalAccepted,
    ApprovalInvalidated,
    ApprovalSigned,
    ChangeRequested,
    DenyReason,
    Envelope,
    Event,
    LeaseDenied,
    PolicyDecision,
    PolicyEvaluated,
    PolicyModeChanged,
    PolicyModeSet,
    TaskFailed,
    VerifiedState,
)
from sdlcflow.streams.deadletter import MessageDeadLettered
from sdlcflow.streams.testing import events

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
AT = 1_700_000_000_123  # 2023-11-14T22:13:20.123Z
STATE = VerifiedState(head_sha="h" * 40, base_sha="b" * 40, policy_revision="rev-7")


def _event(payload: object, *, actor: Actor | None = None, **envelope: object) -> Event:
    fields: dict[str, object] = {
        "event_id": "e-1",
        "type": type(payload).__name__,
        "occurred_at": AT,
        "repo": "acme/web",
        "change_id": "c-1",
        "task_id": "c-1/lint",
        "trace_id": TRACE,
        "causation_id": None,
        "actor": actor or Actor(ActorKind.COORDINATOR, "coordinator"),
    }
    fields.update(envelope)
    return Event(Envelope(**fields), payload)  # type: ignore[arg-type]


def _tables(event: Event) -> list[str]:
    return [p.table for p in placements(event)]


def _decoded(row: Row) -> dict[str, Any]:
    """A row's written columns (and its write timestamp) as the driver reads them."""
    spec = TABLES[row.table]
    kinds = {**dict(spec.columns), WRITE_TIMESTAMP: "bigint"}
    names = (*spec.written, WRITE_TIMESTAMP)
    return {
        name: None if value is None else DRIVER_TYPES[kinds[name]].deserialize(value, 5)
        for name, value in zip(names, row.values, strict=True)
    }


def _rows_by_table(event: Event, avro: bytes = b"x") -> dict[str, Row]:
    record = audit_record(event, avro, Origin("sdlc.agent-events", 0, 1))
    return {row.table: row for row in rows_of(record, placements(event))}


class TestPlacements:
    """Each event is placed in every table whose key it has, and only those."""

    def test_change_event_lands_in_its_change_partition_with_lookups_from_trace_and_task(
        self,
    ) -> None:
        event = _event(TaskFailed("l-1", 1, "boom"))
        assert sorted(_tables(event)) == sorted(
            [
                "events_by_id",
                "events_by_type_hour",
                "events_by_change",
                "changes_by_trace",
                "changes_by_task",
                "events_by_repo_day",
                "events_by_actor_day",
            ]
        )

    def test_change_row_names_the_trace_and_task_its_lookups_lead_from(self) -> None:
        rows = _rows_by_table(_event(TaskFailed("l-1", 1, "boom")))
        change = _decoded(rows["events_by_change"])
        assert (change["trace_id"], change["task_id"]) == (TRACE, "c-1/lint")
        assert _decoded(rows["changes_by_trace"]) == {
            "trace_id": TRACE,
            "change_id": "c-1",
            WRITE_TIMESTAMP: AT * 1000 + 1,
        }
        assert rows["changes_by_task"].key == (b"c-1/lint", b"c-1")

    def test_every_event_of_a_change_shares_its_lookup_rows(self) -> None:
        rows = []
        for i in range(5):
            event = _event(TaskFailed("l-1", 1, "boom"), event_id=f"e-{i}", occurred_at=AT + i)
            record = audit_record(event, b"x", Origin("sdlc.agent-events", 0, i))
            rows += rows_of(record, placements(event))
        written = [r.table for w in group_writes(rows) for r in w.rows]
        assert written.count("changes_by_trace") == written.count("changes_by_task") == 1
        assert written.count("events_by_change") == 5

    def test_event_without_a_change_lands_in_its_trace_and_task_partitions(self) -> None:
        event = _event(TaskFailed("l-1", 1, "boom"), change_id=None)
        tables = _tables(event)
        assert {"events_by_trace", "events_by_task"} <= set(tables)
        assert not {"events_by_change", "changes_by_trace", "changes_by_task"} & set(tables)

    def test_missing_keys_skip_their_tables(self) -> None:
        event = _event(TaskFailed("l-1", 1, "boom"), change_id=None, task_id=None)
        assert "events_by_change" not in _tables(event)
        assert "events_by_task" not in _tables(event)

    def test_policy_decision_is_filed_under_all_and_each_named_policy(self) -> None:
        payload = PolicyEvaluated(
            PolicyDecision.FAIL,
            True,
            STATE,
            "sha256:e",
            ("auth_paths: touches auth/", "env_vars: renamed DB_URL", "auth_paths: again"),
        )
        rows = [p for p in placements(_event(payload)) if p.table.startswith("policy")]
        assert [p.column("policy") for p in rows] == [ALL_POLICIES, "auth_paths", "env_vars"]
        assert {p.column("decision") for p in rows} == {"FAIL"}
        assert rows[0].column("policy_revision") == "rev-7"
        row = _rows_by_table(_event(payload))["policy_decisions_by_policy_day"]
        assert _decoded(row)["day"].date() == date(2023, 11, 14)

    def test_policy_mode_change_is_filed_under_its_policy(self) -> None:
        assert policy_names(PolicyModeChanged("env_vars", True)) == ("env_vars",)

    def test_accepted_policy_mode_switch_is_a_policy_row_with_its_reason(self) -> None:
        payload = PolicyModeSet("env_vars", True, "ticket OPS-12", "ops-1")
        rows = [p for p in placements(_event(payload)) if p.table.startswith("policy")]
        assert "PolicyModeSet" in POLICY_TYPES
        assert [p.column("policy") for p in rows] == ["env_vars"]
        assert rows[0].column("enforced") is True
        assert rows[0].column("reasons") == ["ticket OPS-12"]

    def test_approvals_are_filed_under_each_reviewer_by_month(self) -> None:
        signed = _event(ApprovalSigned(STATE, "sha256:e"), actor=Actor(ActorKind.HUMAN, "alice"))
        accepted = _event(ApprovalAccepted("bob", 1, 2, STATE, "sha256:e"))
        invalidated = _event(ApprovalInvalidated("head moved", STATE, ("carol", "alice")))
        assert reviewers(signed) == ("alice",)
        assert reviewers(accepted) == ("bob",)
        assert reviewers(invalidated) == ("alice", "carol")
        month = [p for p in placements(invalidated) if p.table == "approvals_by_reviewer_month"]
        assert [p.column("month") for p in month] == ["2023-11", "2023-11"]

    def test_dead_letter_is_filed_by_the_refused_records_day_with_its_origin(self) -> None:
        letter = MessageDeadLettered(
            "not-wire-format", "bad magic", "sdlc.agent-events", 3, 42, "g", AT - 86_400_000
        )
        event = _event(letter, occurred_at=AT + 5, change_id=None, task_id=None)
        (placement,) = [p for p in placements(event) if p.table == "dead_letters_by_day"]
        assert (placement.column("origin_topic"), placement.column("origin_offset")) == (
            "sdlc.agent-events",
            42,
        )
        row = _decoded(_rows_by_table(event)["dead_letters_by_day"])
        assert (row["day"].date(), row["origin_offset"]) == (date(2023, 11, 13), 42)
        assert event_time(event) == AT - 86_400_000

    @given(events())
    @settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow])
    def test_every_placement_fills_every_extra_column_of_its_table(self, event: Event) -> None:
        record = audit_record(event, b"\x00avro", Origin("sdlc.coordinator", 0, 1))
        for row in rows_of(record, placements(event)):
            assert len(row.values) == len(TABLES[row.table].written) + 1
            parts = row.partition if isinstance(row.partition, tuple) else (row.partition,)
            assert None not in parts


class TestAuditRecord:
    """The shared columns carry the whole event and what analysts filter on."""

    def test_json_rendering_round_trips_envelope_and_payload(self) -> None:
        event = _event(LeaseDenied("agent-7", DenyReason.ALREADY_LEASED, "held"))
        record = audit_record(event, b"raw", Origin("sdlc.coordinator", 2, 9, AT))
        rendered = orjson.loads(render_json(event))
        assert rendered["envelope"]["event_id"] == "e-1"
        assert rendered["envelope"]["actor"] == {"kind": "coordinator", "id": "coordinator"}
        assert rendered["payload"]["reason"] == "ALREADY_LEASED"
        assert record.outcome == "denied:ALREADY_LEASED"
        assert (record.topic, record.partition, record.offset, record.avro) == (
            "sdlc.coordinator",
            2,
            9,
            b"raw",
        )

    def test_bytes_in_a_dead_letter_render_as_hex(self) -> None:
        letter = MessageDeadLettered("empty", "", "t", 0, 0, "g", value=b"\x01\xff")
        assert orjson.loads(render_json(_event(letter)))["payload"]["value"] == "01ff"

    def test_before_and_after_sha_come_from_base_and_head(self) -> None:
        requested = ChangeRequested("refactor", "code-change", "b1", "h1", "")
        assert shas(requested) == ("b1", "h1")
        assert shas(PolicyEvaluated(PolicyDecision.PASS, False, STATE, "d", ())) == (
            "b" * 40,
            "h" * 40,
        )
        assert shas(TaskFailed("l", 1, "e")) == (None, None)

    def test_outcomes_name_the_verdict(self) -> None:
        assert outcome_of(TaskFailed("l", 1, "e", retryable=False)) == "failed-final"
        assert outcome_of(PolicyEvaluated(PolicyDecision.REVIEW, True, STATE, "d", ())) == "REVIEW"

    def test_write_time_is_the_event_time_in_microseconds_with_the_log_of_record_winning(
        self,
    ) -> None:
        event = _event(TaskFailed("l", 1, "e"))
        coordinator = write_time(event, "sdlc.coordinator")
        task_topic = write_time(event, "sdlc.tasks.lint")
        assert coordinator // 1000 == task_topic // 1000 == AT
        assert coordinator > task_topic

    @given(events())
    @settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow])
    def test_same_event_gives_identical_rows(self, event: Event) -> None:
        origin = Origin("sdlc.agent-events", 1, 5)
        first = rows_of(audit_record(event, b"x", origin), placements(event))
        again = rows_of(audit_record(dataclasses.replace(event), b"x", origin), placements(event))
        assert first == again

    def test_hour_bucket_is_the_start_of_the_utc_hour(self) -> None:
        row = _rows_by_table(_event(TaskFailed("l", 1, "e")))["events_by_type_hour"]
        assert _decoded(row)["hour"] == datetime(2023, 11, 14, 22)

    def test_buckets_of_a_time_no_calendar_holds_are_clamped_not_refused(self) -> None:
        event = _event(TaskFailed("l", 1, "e"), occurred_at=-5)
        record = audit_record(event, b"", Origin("t", 0, 0))
        day = cqltypes.SimpleDateType.deserialize(shared_columns(record)["day"], 5)
        assert day.date() == date(1970, 1, 1)

    def test_a_time_no_calendar_holds_still_gives_a_64_bit_write_timestamp(self) -> None:
        for at in (2**63 - 1, 2**53, -(2**63)):
            event = _event(TaskFailed("l", 1, "e"), occurred_at=at)
            record = audit_record(event, b"", Origin("t", 0, 0))
            assert 0 <= record.write_timestamp < 2**63
            assert rows_of(record, placements(event))  # the sink stores it, not stops at it

    def test_record_fields_start_with_the_written_common_columns_in_table_order(self) -> None:
        written = [n for n, _ in COMMON_COLUMNS if n not in READ_ONLY_COLUMNS]
        fields = [name.removeprefix("kafka_") for name in written]
        assert list(AuditRecord._fields[: len(fields)]) == fields


class TestGroupWrites:
    """Rows of one partition travel as one batch, under the size limits, never twice."""

    def _rows(self, n: int, table: str = "events_by_change") -> list[Row]:
        out = []
        for i in range(n):
            event = _event(TaskFailed("l", 1, "e"), event_id=f"e-{i}", occurred_at=AT + i)
            record = audit_record(event, b"x" * 100, Origin("sdlc.agent-events", 0, i))
            out += [r for r in rows_of(record, placements(event)) if r.table == table]
        return out

    def test_one_partition_becomes_one_batch(self) -> None:
        writes = group_writes(self._rows(10))
        assert [w.events for w in writes] == [10]

    def test_distinct_partitions_are_separate_requests(self) -> None:
        writes = group_writes(self._rows(5, "events_by_id"))
        assert [w.events for w in writes] == [1] * 5

    def test_batches_are_cut_at_the_row_and_byte_limits(self) -> None:
        assert [w.events for w in group_writes(self._rows(10), max_rows=4)] == [4, 4, 2]
        sized = group_writes(self._rows(10), max_bytes=self._rows(1)[0].size * 3)
        assert all(w.events <= 3 for w in sized)
        assert sum(w.events for w in sized) == 10

    @given(events())
    @settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow])
    def test_a_rows_size_is_its_values_bytes_and_sixteen_per_cell_and_row(
        self, event: Event
    ) -> None:
        record = audit_record(event, b"\x00avro", Origin("sdlc.coordinator", 2, 7))
        for row in rows_of(record, placements(event)):
            values = row.values
            assert row.size == 16 + 16 * len(values) + sum(len(v) for v in values if v)

    def test_a_row_repeated_in_one_poll_is_written_once(self) -> None:
        rows = self._rows(3)
        assert sum(w.events for w in group_writes(rows + rows)) == 3

    def test_rows_of_any_tables_sharing_a_route_travel_in_one_batch(self) -> None:
        rows = self._rows(4, "events_by_id") + self._rows(4)
        (write,) = group_writes(rows, route=lambda _row: "replica-1")
        assert write.events == 8
        assert write.tables == {"events_by_id", "events_by_change"}

    def test_rows_of_one_partition_are_adjacent_whatever_the_arrival_order(self) -> None:
        ids, trace = self._rows(3, "events_by_id"), self._rows(3)
        interleaved = [row for pair in zip(ids, trace, strict=True) for row in pair]
        (write,) = group_writes(interleaved, route=lambda _row: "replica-1")
        tables = [row.table for row in write.rows]
        first = tables.index("events_by_change")
        assert tables[first : first + 3] == ["events_by_change"] * 3
        assert len(write.rows) == 6

    def test_distinct_routes_never_share_a_batch(self) -> None:
        rows = self._rows(6, "events_by_id")
        writes = group_writes(rows, route=lambda row: _parity(row.key[0]))
        assert sorted(w.events for w in writes) == [3, 3]
        for write in writes:
            assert len({_parity(r.key[0]) for r in write.rows}) == 1


def _parity(event_id: bytes | None) -> int:
    return int((event_id or b"").removeprefix(b"e-")) % 2


class TestLeanRows:
    """The event's bytes are written once, in events_by_id; index rows carry keys only."""

    def _rows(self) -> dict[str, Row]:
        event = _event(PolicyEvaluated(PolicyDecision.FAIL, True, STATE, "sha256:e", ("p: x",)))
        record = audit_record(event, b"\x00avro-bytes", Origin("sdlc.coordinator", 3, 9))
        return {r.table: r for r in rows_of(record, placements(event))}

    def test_the_whole_event_table_gets_every_column_with_the_avro_but_no_json(self) -> None:
        values = _decoded(self._rows()["events_by_id"])
        names = [n for n in TABLES["events_by_id"].column_names if n not in READ_ONLY_COLUMNS]
        assert list(values) == [*names, WRITE_TIMESTAMP]
        assert "json" not in values  # rendered from the Avro bytes when read
        assert values["avro"] == b"\x00avro-bytes"
        assert (values["kafka_partition"], values["kafka_offset"]) == (3, 9)
        assert values["occurred_at"] == datetime(2023, 11, 14, 22, 13, 20, 123000)

    def test_index_rows_carry_their_key_and_own_columns_but_not_the_body(self) -> None:
        for table, row in self._rows().items():
            spec = TABLES[table]
            if spec.whole_event:
                continue
            assert "avro" not in spec.written and "json" not in spec.written, table
            assert set(spec.partition_key + spec.clustering) <= set(spec.written), table
            assert b"\x00avro-bytes" not in row.values, table

    def test_policy_index_row_keeps_the_decision_columns(self) -> None:
        values = _decoded(self._rows()["policy_decisions_by_policy_day"])
        assert (values["decision"], values["enforced"]) == ("FAIL", True)
        assert (values["policy"], values["reasons"]) == ("p", ["p: x"])  # the last of * and p


class TestCqlValues:
    """Each column type is serialised to exactly the bytes the driver's own type gives."""

    @given(st.text())
    def test_text(self, value: str) -> None:
        assert cql.text(value) == cqltypes.UTF8Type.serialize(value, 5)

    @given(st.integers(-(2**31), 2**31 - 1), st.integers(-(2**63), 2**63 - 1))
    def test_int_and_bigint(self, small: int, large: int) -> None:
        assert cql.cql_int(small) == cqltypes.Int32Type.serialize(small, 5)
        assert cql.bigint(large) == cqltypes.LongType.serialize(large, 5)

    @given(st.integers(0, 253_402_300_799_999))
    def test_timestamp_and_day_of_ms_since_the_epoch(self, ms: int) -> None:
        at = datetime.fromtimestamp(ms / 1000, UTC).replace(tzinfo=None)
        assert cql.timestamp(ms) == cqltypes.DateType.serialize(ms, 5)
        assert cql.day_of(ms) == cqltypes.SimpleDateType.serialize(at.date(), 5)

    @given(st.booleans(), st.lists(st.text(), max_size=5), st.binary())
    def test_boolean_list_and_blob(self, flag: bool, items: list[str], raw: bytes) -> None:
        assert cql.boolean(flag) == cqltypes.BooleanType.serialize(flag, 5)
        assert cql.text_list(items) == DRIVER_TYPES["list<text>"].serialize(items, 5)
        assert cql.blob(raw) == cqltypes.BytesType.serialize(raw, 5)

    @given(events())
    @settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow])
    def test_shared_columns_are_serialised_as_their_tables_declare(self, event: Event) -> None:
        record = audit_record(event, b"\x00avro", Origin("sdlc.coordinator", 2, 7))
        columns = shared_columns(record)
        written = [(n, kind) for n, kind in COMMON_COLUMNS if n not in READ_ONLY_COLUMNS]
        for (name, kind), value in zip(written, record, strict=False):
            assert columns[name] == (None if value is None else cql.serializer(kind)(value)), name

    def test_every_declared_column_type_has_a_serialiser(self) -> None:
        for spec in TABLES.values():
            for _, kind in spec.columns:
                assert cql.serializer(kind) is cql.SERIALIZERS[kind]


class TestMigrationMatchesTables:
    """The 0002 and 0003 migrations create exactly the tables, columns and keys the code writes."""

    def _migration(self) -> str:
        folder = resources.files("sdlcflow") / "migrations"
        entries = [e for e in folder.iterdir() if e.name.startswith(("0002_", "0003_"))]
        assert len(entries) == 2
        return "\n".join(entry.read_text() for entry in entries)

    def test_every_table_is_created_with_its_columns_and_primary_key(self) -> None:
        text = self._migration()
        created = re.findall(
            r"CREATE TABLE IF NOT EXISTS \$\{keyspace\}\.(\w+) \((.*?)PRIMARY KEY \((.*?)\)\n\)",
            text,
            re.S,
        )
        assert {name for name, _, _ in created} == set(TABLES)
        for name, body, key in created:
            spec = TABLES[name]
            columns = [
                tuple(line.strip().rstrip(",").split(" ", 1)) for line in body.strip().splitlines()
            ]
            assert columns == [tuple(c) for c in spec.columns], name
            if key.startswith("("):
                inner, _, rest = key[1:].partition(")")
            else:
                inner, _, rest = key.partition(",")
            partition = tuple(p.strip() for p in inner.split(","))
            clustering = tuple(p.strip() for p in rest.split(",") if p.strip())
            assert (partition, clustering) == (spec.partition_key, spec.clustering), name
