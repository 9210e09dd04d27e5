"""Report metrics, timelines and time windows are computed from rows alone."""

from __future__ import annotations

from datetime import date, datetime

import orjson
import pytest

from sdlcflow.audit import windows
from sdlcflow.audit.metrics import (
    build_report,
    percentile,
    percentiles,
    task_spans,
    timeline,
)
from sdlcflow.audit.model import AuditRow
from sdlcflow.audit.windows import WindowError, parse_duration_ms, parse_instant

H = 3_600_000
T0 = 1_700_000_000_000 // H * H  # an hour boundary


def _row(
    event_type: str,
    at: int,
    *,
    task: str | None = "c1/lint",
    change: str | None = "c1",
    actor_kind: str = "coordinator",
    outcome: str = "",
    **payload: object,
) -> AuditRow:
    return AuditRow(
        event_id=f"{event_type}-{at}",
        event_type=event_type,
        occurred_at=at,
        repo="acme/web",
        change_id=change,
        task_id=task,
        trace_id="t" * 32,
        causation_id=None,
        actor_kind=actor_kind,
        actor_id="x",
        outcome=outcome,
        before_sha=None,
        after_sha=None,
        topic="sdlc.coordinator",
        partition=0,
        offset=0,
        json=orjson.dumps({"envelope": {}, "payload": payload}).decode(),
    )


class TestPercentiles:
    """Nearest-rank percentiles over durations."""

    def test_nearest_rank_picks_an_observed_value(self) -> None:
        values = [float(v) for v in range(1, 101)]
        assert (percentile(values, 50), percentile(values, 95), percentile(values, 99)) == (
            50.0,
            95.0,
            99.0,
        )

    def test_no_values_gives_none(self) -> None:
        empty = percentiles([])
        assert (empty.count, empty.p50, empty.mean) == (0, None, None)

    def test_single_value_is_every_percentile(self) -> None:
        one = percentiles([7.0])
        assert (one.p50, one.p95, one.p99, one.mean) == (7.0, 7.0, 7.0, 7.0)


class TestReport:
    """The report's figures follow from the events of the window."""

    def test_latencies_pair_offer_grant_and_completion_of_the_same_epoch(self) -> None:
        rows = [
            _row("TaskOffered", T0, epoch=1),
            _row("LeaseGranted", T0 + 500, epoch=1),
            _row("TaskCompleted", T0 + 2500, epoch=1),
            _row("TaskOffered", T0 + 10, task="c1/test", epoch=1),
            _row("LeaseGranted", T0 + 1010, task="c1/test", epoch=1),
        ]
        report = build_report(rows, T0, T0 + H)
        assert report.enqueue_to_lease_ms.count == 2
        assert report.enqueue_to_lease_ms.p99 == 1000.0
        assert report.lease_to_completion_ms.p50 == 2000.0
        assert report.tasks_completed == 1
        assert report.throughput_per_hour == 1.0

    def test_change_end_to_end_runs_from_request_to_closure(self) -> None:
        rows = [
            _row("ChangeRequested", T0, task=None),
            _row("ChangePlanned", T0 + 5, task=None),
            _row("ChangePromoted", T0 + 60_000, task=None),
            _row("ChangeRequested", T0 + 1, change="c2", task=None),
            _row("ChangeBlocked", T0 + 30_000, change="c2", task=None),
        ]
        report = build_report(rows, T0, T0 + H)
        assert report.change_end_to_end_ms.p50 == 29_999.0
        assert report.change_end_to_end_ms.p99 == 60_000.0
        assert report.changes_closed == {"promoted": 1, "blocked": 1}

    def test_contention_counts_only_denials_for_a_held_lease_or_resource(self) -> None:
        rows = [
            _row("LeaseGranted", T0, epoch=1),
            _row("LeaseDenied", T0 + 1, reason="ALREADY_LEASED"),
            _row("LeaseDenied", T0 + 2, reason="RESOURCE_BUSY"),
            _row("LeaseDenied", T0 + 3, reason="WRONG_AUTHORITY"),
        ]
        report = build_report(rows, T0, T0 + H)
        assert (report.lease_requests, report.lease_contended) == (4, 2)
        assert report.lease_contention_rate == 0.5

    def test_policy_failure_rate_and_dead_letters(self) -> None:
        rows = [
            _row("PolicyEvaluated", T0, decision="FAIL"),
            _row("PolicyEvaluated", T0 + 1, decision="PASS"),
            _row("PolicyEvaluated", T0 + 2, decision="REVIEW"),
            _row("PolicyEvaluated", T0 + 3, decision="PASS"),
            _row("MessageDeadLettered", T0 + 4, outcome="not-wire-format"),
            _row("MessageDeadLettered", T0 + 5, outcome="not-wire-format"),
            _row("TaskDeadLettered", T0 + 6),
        ]
        report = build_report(rows, T0, T0 + H)
        assert report.policy_failure_rate == 0.25
        assert report.dead_letters_by_reason == {"not-wire-format": 2}
        assert report.tasks_dead_lettered == 1

    def test_mttr_runs_from_the_first_agent_failure_to_the_next_completion(self) -> None:
        rows = [
            _row("TaskFailed", T0, actor_kind="agent"),
            _row("TaskFailed", T0 + 1000, actor_kind="agent"),  # same incident
            _row("TaskCompleted", T0 + 4000),
            _row("LeaseExpired", T0 + 100, task="c1/test"),
            _row("TaskCompleted", T0 + 2100, task="c1/test"),
            _row("TaskFailed", T0 + 200, task="c1/merge", actor_kind="agent"),  # not recovered
            _row("TaskFailed", T0 + 300, task="c1/deploy", actor_kind="ops"),  # not an agent's
        ]
        report = build_report(rows, T0, T0 + H)
        assert (report.agent_failures, report.agent_failures_recovered) == (3, 2)
        assert report.mttr_ms == 3000.0

    def test_rows_outside_the_window_are_not_counted(self) -> None:
        rows = [_row("TaskCompleted", T0 - 1), _row("TaskCompleted", T0 + H)]
        report = build_report(rows, T0, T0 + H)
        assert report.tasks_completed == 0
        assert report.throughput_series == ((T0, 0),)

    def test_throughput_series_has_one_point_per_hour(self) -> None:
        rows = [_row("TaskCompleted", T0 + 5), _row("TaskCompleted", T0 + H + 5)]
        report = build_report(rows, T0, T0 + 2 * H)
        assert report.throughput_series == ((T0, 1), (T0 + H, 1))
        assert orjson.loads(orjson.dumps(report.to_json()))["tasks_completed"] == 2


class TestTimeline:
    """A trace reads as steps with the time between them, and per-task waits."""

    def test_steps_carry_time_since_previous_and_since_start(self) -> None:
        rows = [
            _row("LeaseGranted", T0 + 300),
            _row("TaskOffered", T0),
            _row("TaskCompleted", T0 + 1300),
        ]
        steps = timeline(rows)
        assert [s.row.event_type for s in steps] == ["TaskOffered", "LeaseGranted", "TaskCompleted"]
        assert [s.since_previous_ms for s in steps] == [0, 300, 1000]
        assert [s.since_start_ms for s in steps] == [0, 300, 1300]

    def test_task_spans_measure_wait_and_work(self) -> None:
        rows = [
            _row("TaskOffered", T0),
            _row("LeaseGranted", T0 + 200),
            _row("LeaseExpired", T0 + 900),
            _row("LeaseGranted", T0 + 1000),
            _row("TaskCompleted", T0 + 1500),
        ]
        (span,) = task_spans(rows)
        assert (span.outcome, span.attempts, span.wait_ms, span.work_ms) == (
            "completed",
            2,
            1000,
            500,
        )


class TestWindows:
    """Durations and dates become instants, and windows the buckets they span."""

    def test_durations(self) -> None:
        assert parse_duration_ms("24h") == 24 * H
        assert parse_duration_ms("7d") == 7 * 24 * H
        assert parse_duration_ms("90s") == 90_000

    def test_instants_are_a_duration_ago_or_an_iso_time(self) -> None:
        assert parse_instant("1h", T0) == T0 - H
        assert parse_instant("2023-11-14T22:00:00Z", 0) == 1_699_999_200_000
        assert parse_instant("2023-11-14T22:00:00", 0) == 1_699_999_200_000

    def test_nonsense_is_refused_with_the_accepted_forms(self) -> None:
        with pytest.raises(WindowError, match="24h"):
            parse_instant("yesterday", T0)

    def test_buckets_cover_the_window(self) -> None:
        start = parse_instant("2023-11-14T23:30:00Z", 0)
        end = parse_instant("2023-11-15T01:00:00Z", 0)
        assert windows.days(start, end) == [date(2023, 11, 14), date(2023, 11, 15)]
        assert windows.hours(start, end) == [datetime(2023, 11, 14, 23), datetime(2023, 11, 15, 0)]
        assert windows.months(start, end) == ["2023-11"]
        assert windows.months(parse_instant("2023-12-31", 0), parse_instant("2024-02-01", 0)) == [
            "2023-12",
            "2024-01",
        ]
