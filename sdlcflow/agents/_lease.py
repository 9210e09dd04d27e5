"""The agent's side of one lease, as pure bookkeeping: when to heartbeat, when it is gone.

Times are the caller's monotonic milliseconds. Durations come from the coordinator's own
numbers (`expires_at - occurred_at` of the grant or extension, measured from when the agent
sent the request or heartbeat that caused it), so clock skew between hosts cannot stretch a
lease: the agent always believes its lease ends no later than the coordinator does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

# Heartbeat this many times per TTL: two may be lost before the lease is at risk.
HEARTBEATS_PER_TTL = 3


class LeasePhase(StrEnum):
    ACTIVE = "active"
    LOST = "lost"
    RESULT_SENT = "result-sent"
    SETTLED = "settled"


@dataclass
class LeaseClock:
    """Heartbeat schedule and loss detection for one granted lease."""

    lease_id: str
    epoch: int
    deadline: float  # local monotonic ms after which the coordinator may consider it expired
    ttl_ms: float
    last_heartbeat: float
    phase: LeasePhase = LeasePhase.ACTIVE
    reason: str = ""
    _sent: dict[str, float] = field(default_factory=dict)

    @classmethod
    def granted(
        cls, lease_id: str, epoch: int, expires_at: int, occurred_at: int, requested_local: float
    ) -> LeaseClock:
        """A lease granted by a decision made `expires_at - occurred_at` ms before it ends."""
        ttl = max(1.0, float(expires_at - occurred_at))
        return cls(lease_id, epoch, requested_local + ttl, ttl, requested_local)

    @property
    def interval_ms(self) -> float:
        return self.ttl_ms / HEARTBEATS_PER_TTL

    @property
    def active(self) -> bool:
        return self.phase is LeasePhase.ACTIVE

    def next_wakeup(self) -> float:
        """When the keeper must look again: the next heartbeat or the deadline, whichever first."""
        return min(self.last_heartbeat + self.interval_ms, self.deadline)

    def heartbeat_due(self, now: float) -> bool:
        return self.active and now >= self.last_heartbeat + self.interval_ms

    def heartbeat_sent(self, event_id: str, now: float) -> None:
        self.last_heartbeat = now
        self._sent[event_id] = now
        if len(self._sent) > 16:  # only recent heartbeats can still be answered
            self._sent.pop(next(iter(self._sent)))

    def extended(self, expires_at: int, occurred_at: int, cause_id: str | None, now: float) -> None:
        """A LeaseExtended arrived; measure the new life from when its heartbeat left."""
        sent = self._sent.pop(cause_id, now) if cause_id else now
        self.deadline = max(self.deadline, sent + float(expires_at - occurred_at))

    def silent(self, now: float) -> bool:
        """True when the deadline passed with no extension: the coordinator may have expired it."""
        return self.active and now >= self.deadline

    def lose(self, reason: str) -> bool:
        """Mark the lease lost; False if it was already lost or settled (nothing to do again)."""
        if self.phase in (LeasePhase.LOST, LeasePhase.SETTLED):
            return False
        self.phase = LeasePhase.LOST
        self.reason = reason
        return True

    def result_sent(self) -> bool:
        """Fence: only an active lease may publish a result; returns whether it may."""
        if not self.active:
            return False
        self.phase = LeasePhase.RESULT_SENT
        return True

    def settle(self) -> None:
        self.phase = LeasePhase.SETTLED
