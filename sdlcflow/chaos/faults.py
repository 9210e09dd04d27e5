"""What a chaos run does to the system and when: fault kinds, run profiles, the seeded schedule.

The schedule is a pure function of the seed and the profile, so a run that found a problem
can be repeated fault for fault (`sdlcflow chaos run --seed N`). Which agent a fault hits is
chosen at schedule time too; which lease is revoked depends on what is live at that moment.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum


class FaultKind(StrEnum):
    KILL_COORDINATOR = "kill-coordinator"  # kill -9 the faust worker, start it again
    KILL_AGENT = "kill-agent"  # kill -9 an agent process mid-task, start it again
    BOUNCE_KAFKA = "bounce-kafka"  # stop the broker, start it again
    STOP_CASSANDRA = "stop-cassandra"  # stop the audit store for a while
    ZOMBIE_AGENT = "zombie-agent"  # SIGSTOP an agent past its lease TTL, then SIGCONT
    DELAY_COORDINATOR = "delay-coordinator"  # SIGSTOP the faust worker briefly
    REVOKE_LEASE = "revoke-lease"  # ops revokes the credential of a live lease's holder
    MOVE_HEAD = "move-head"  # a change's head SHA moves: its leases are revoked, tasks re-run
    DUPLICATE_INPUTS = "duplicate-inputs"  # re-produce the latest input records byte for byte
    REPLAY_OFFSETS = "replay-offsets"  # re-produce old input records byte for byte


@dataclass(frozen=True)
class Profile:
    """The size of a run: workload, timing, and how many faults of each kind."""

    name: str
    changes: int
    repos: int
    agents: int
    agent_concurrency: int
    fault_window_s: float
    lease_ttl_ms: int
    kafka_outage_s: float
    cassandra_outage_s: float
    coordinator_delay_s: float
    faults: tuple[tuple[FaultKind, int], ...]
    settle_timeout_s: float

    @property
    def zombie_pause_s(self) -> float:
        """Long enough that the paused agent's lease has certainly expired."""
        return self.lease_ttl_ms / 1000 * 2 + 1.0

    def hold_s(self, kind: FaultKind) -> float:
        """How long a fault lasts before it is healed (0: it is instantaneous)."""
        return {
            FaultKind.BOUNCE_KAFKA: self.kafka_outage_s,
            FaultKind.STOP_CASSANDRA: self.cassandra_outage_s,
            FaultKind.ZOMBIE_AGENT: self.zombie_pause_s,
            FaultKind.DELAY_COORDINATOR: self.coordinator_delay_s,
            FaultKind.KILL_COORDINATOR: 1.0,
            FaultKind.KILL_AGENT: 1.0,
        }.get(kind, 0.0)


SHORT = Profile(
    name="short",
    changes=24,
    repos=6,
    agents=3,
    agent_concurrency=4,
    fault_window_s=60.0,
    lease_ttl_ms=4_000,
    kafka_outage_s=4.0,
    cassandra_outage_s=12.0,
    coordinator_delay_s=2.0,
    faults=(
        (FaultKind.KILL_COORDINATOR, 1),
        (FaultKind.KILL_AGENT, 2),
        (FaultKind.BOUNCE_KAFKA, 1),
        (FaultKind.STOP_CASSANDRA, 1),
        (FaultKind.ZOMBIE_AGENT, 1),
        (FaultKind.DELAY_COORDINATOR, 2),
        (FaultKind.REVOKE_LEASE, 3),
        (FaultKind.MOVE_HEAD, 2),
        (FaultKind.DUPLICATE_INPUTS, 2),
        (FaultKind.REPLAY_OFFSETS, 2),
    ),
    settle_timeout_s=120.0,
)

LONG = Profile(
    name="long",
    changes=200,
    repos=20,
    agents=4,
    agent_concurrency=6,
    fault_window_s=480.0,
    lease_ttl_ms=5_000,
    kafka_outage_s=15.0,
    cassandra_outage_s=60.0,
    coordinator_delay_s=4.0,
    faults=(
        (FaultKind.KILL_COORDINATOR, 4),
        (FaultKind.KILL_AGENT, 8),
        (FaultKind.BOUNCE_KAFKA, 2),
        (FaultKind.STOP_CASSANDRA, 2),
        (FaultKind.ZOMBIE_AGENT, 4),
        (FaultKind.DELAY_COORDINATOR, 6),
        (FaultKind.REVOKE_LEASE, 15),
        (FaultKind.MOVE_HEAD, 8),
        (FaultKind.DUPLICATE_INPUTS, 6),
        (FaultKind.REPLAY_OFFSETS, 6),
    ),
    settle_timeout_s=180.0,
)

PROFILES = {SHORT.name: SHORT, LONG.name: LONG}


@dataclass(frozen=True)
class PlannedFault:
    """One fault of the schedule: when (seconds into the fault window), what, and on whom."""

    at_s: float
    kind: FaultKind
    target: int  # which agent process (or a seed for choosing a lease, change or records)
    hold_s: float

    def to_json(self) -> dict[str, object]:
        return {
            "at_s": round(self.at_s, 2),
            "kind": self.kind.value,
            "target": self.target,
            "hold_s": self.hold_s,
        }


def schedule(seed: int, profile: Profile) -> tuple[PlannedFault, ...]:
    """The run's faults in time order, spread over the fault window; the same seed and profile
    always give the same schedule. The first tenth of the window is left quiet so the
    workload is under way before anything breaks."""
    rng = random.Random(seed)
    kinds = [kind for kind, count in profile.faults for _ in range(count)]
    rng.shuffle(kinds)
    start = profile.fault_window_s * 0.1
    slot = (profile.fault_window_s - start) / max(len(kinds), 1)
    planned = []
    for index, kind in enumerate(kinds):
        at = start + slot * index + rng.uniform(0, slot * 0.5)
        planned.append(PlannedFault(at, kind, rng.randrange(1 << 30), profile.hold_s(kind)))
    return tuple(planned)
