"""What `sdlcflow status` shows about the running services: who owns which partitions, how far
behind each consumer group is, the dead-letter size and the leases held right now.

Assignment, lag and dead-letter size come from the broker (admin API), so they need no
service to answer; live leases are read from the processors workers' /metrics endpoints.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from prometheus_client.parser import text_string_to_metric_families

from sdlcflow.observability.lag import (
    MemberAssignment,
    PartitionLag,
    assignments,
    group_lag,
    topic_size,
)
from sdlcflow.streams.topics import DEAD_LETTER

AGENT_GROUP_PREFIX = "sdlcflow-agents-"
SCRAPE_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class GroupOverview:
    """One consumer group: its members' partitions and its lag per topic."""

    group: str
    members: tuple[MemberAssignment, ...]
    lags: tuple[PartitionLag, ...]

    def lag_by_topic(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for lag in self.lags:
            totals[lag.topic] = totals.get(lag.topic, 0) + lag.lag
        return dict(sorted(totals.items()))

    def to_json(self) -> dict[str, object]:
        return {
            "group": self.group,
            "members": [
                {
                    "member": m.member,
                    "host": m.host,
                    "partitions": [f"{topic}:{partition}" for topic, partition in m.partitions],
                }
                for m in self.members
            ],
            "lag_by_topic": self.lag_by_topic(),
            "lag": [
                {"topic": lag.topic, "partition": lag.partition, "lag": lag.lag}
                for lag in self.lags
            ],
        }


@dataclass
class Overview:
    """The services' side of `sdlcflow status`; `problems` says what could not be read."""

    groups: list[GroupOverview] = field(default_factory=list)
    dead_letter_size: int | None = None
    live_leases: dict[str, int] | None = None
    problems: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {
            "groups": [group.to_json() for group in self.groups],
            "dead_letter_size": self.dead_letter_size,
            "live_leases": self.live_leases,
            "problems": self.problems,
        }


def watched_groups(admin: AdminClient, given: Sequence[str]) -> list[str]:
    """The given groups (coordinator, audit sink) plus every agent group the broker knows."""
    listed = admin.list_consumer_groups(request_timeout=10).result()
    agents = sorted(g.group_id for g in listed.valid if g.group_id.startswith(AGENT_GROUP_PREFIX))
    return list(dict.fromkeys([*given, *agents]))


def live_leases(urls: Sequence[str]) -> dict[str, int]:
    """Sum of `sdlcflow_leases_live` by capability over the given /metrics endpoints."""
    totals: dict[str, int] = {}
    for url in urls:
        with urllib.request.urlopen(url, timeout=SCRAPE_TIMEOUT_S) as response:
            text = response.read().decode()
        for family in text_string_to_metric_families(text):
            if family.name != "sdlcflow_leases_live":
                continue
            for sample in family.samples:
                capability = sample.labels.get("capability", "")
                totals[capability] = totals.get(capability, 0) + int(sample.value)
    return dict(sorted(totals.items()))


def overview(
    bootstrap: str,
    groups: Sequence[str],
    metrics_urls: Sequence[str] = (),
    *,
    dead_letter_topic: str = DEAD_LETTER,
) -> Overview:
    """Read assignment, lag, dead-letter size and (with `metrics_urls`) live leases."""
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    report = Overview()
    try:
        for group in watched_groups(admin, groups):
            report.groups.append(
                GroupOverview(
                    group, tuple(assignments(admin, group)), tuple(group_lag(admin, group))
                )
            )
        report.dead_letter_size = topic_size(admin, dead_letter_topic)
    except KafkaException as exc:
        report.problems.append(f"Kafka did not answer the admin requests: {exc}")
    if metrics_urls:
        try:
            report.live_leases = live_leases(metrics_urls)
        except OSError as exc:
            report.problems.append(
                f"cannot read live leases from {', '.join(metrics_urls)}: {exc}; start the "
                "processors with --metrics-port and pass its /metrics URL with --metrics"
            )
    return report
