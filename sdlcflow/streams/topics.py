"""The topic catalog: every topic sdlcflow uses, with its partitioning and retention.

All topics are keyed by repository and share one partition count, so one repository's events
are totally ordered and co-partitioned across topics (DESIGN.md, Topics).
"""

from __future__ import annotations

from dataclasses import dataclass, field

CHANGE_REQUESTS = "sdlc.change-requests"
AGENT_EVENTS = "sdlc.agent-events"
COORDINATOR = "sdlc.coordinator"
TICKS = "sdlc.ticks"
DEAD_LETTER = "sdlc.dead-letter"
TASKS_PREFIX = "sdlc.tasks."

# Capabilities whose task topics exist from the start; a new capability gets its topic on
# first use by `ensure_topics`.
DEFAULT_CAPABILITIES: tuple[str, ...] = (
    "lint",
    "test",
    "policy",
    "approval",
    "merge",
    "deploy",
    "dependency-update",
    "refactor",
    "promote",
    "security-scan",
)

_WEEK_MS = 7 * 24 * 3600 * 1000


def task_topic(capability: str) -> str:
    """The topic on which agents of one capability receive offers, grants and revocations."""
    return f"{TASKS_PREFIX}{capability}"


@dataclass(frozen=True)
class TopicSpec:
    """One topic as sdlcflow creates it; `configs` are broker topic configs."""

    name: str
    partitions: int
    configs: dict[str, str] = field(default_factory=dict)
    doc: str = ""


def catalog(
    partitions: int = 12, capabilities: tuple[str, ...] = DEFAULT_CAPABILITIES
) -> list[TopicSpec]:
    """Every topic with the settings `sdlcflow up` creates it with."""
    log = {
        # the log of record: kept until the audit store and replays no longer need it
        "retention.ms": str(4 * _WEEK_MS),
        "cleanup.policy": "delete",
        # acks=all from the idempotent producers is only meaningful with min.insync.replicas
        # set explicitly; 1 matches the single local broker, production raises it to 2.
        "min.insync.replicas": "1",
    }
    specs = [
        TopicSpec(CHANGE_REQUESTS, partitions, dict(log), "change requests and cancellations"),
        TopicSpec(
            AGENT_EVENTS, partitions, dict(log), "lease requests, heartbeats, results, approvals"
        ),
        TopicSpec(COORDINATOR, partitions, dict(log), "the coordinator's decisions log"),
        # ticks only carry time forward; a day is plenty
        TopicSpec(
            TICKS, partitions, {"retention.ms": str(24 * 3600 * 1000)}, "clock ticks per partition"
        ),
        # dead letters are evidence: keep them longest
        TopicSpec(
            DEAD_LETTER,
            partitions,
            {"retention.ms": str(8 * _WEEK_MS)},
            "undecodable or rejected input",
        ),
    ]
    specs += [
        TopicSpec(
            task_topic(cap), partitions, {"retention.ms": str(_WEEK_MS)}, f"work for {cap} agents"
        )
        for cap in capabilities
    ]
    return specs
