"""A request Cassandra refuses is sent again until acknowledged; one too large, in halves."""

from __future__ import annotations

from cassandra import InvalidRequest, OperationTimedOut

from sdlcflow.audit.store import _retried
from sdlcflow.audit.writes import Row, Write


def _write(rows: int) -> Write:
    return Write(tuple(Row("events_by_id", b"e-%d" % i, (b"e-%d" % i,), 64) for i in range(rows)))


class TestRetriedWrites:
    """Retries never drop a row and never resend a batch Cassandra will always refuse."""

    def test_a_batch_refused_as_too_large_is_sent_again_in_two_halves(self) -> None:
        write = _write(5)
        refused = InvalidRequest('code=2200 [Invalid query] message="Batch too large"')
        halves = _retried(write, refused)
        assert [len(h.rows) for h in halves] == [2, 3]
        assert tuple(row for half in halves for row in half.rows) == write.rows

    def test_a_single_row_and_other_failures_are_sent_again_as_they_were(self) -> None:
        single = _write(1)
        too_large = InvalidRequest("Batch too large")
        assert _retried(single, too_large) == [single]
        batch = _write(4)
        assert _retried(batch, OperationTimedOut("no answer")) == [batch]
