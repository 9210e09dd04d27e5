"""Creating the catalog's topics on a broker: only the missing ones, and saying which existing
ones disagree with the catalog (a partition count cannot be lowered, and raising it would move
repositories to other partitions and break their ordering, so we report instead of altering)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from sdlcflow.infra.errors import InfraError, NotReady
from sdlcflow.streams.topics import TopicSpec

_POLL_S = 0.2


@dataclass(frozen=True)
class TopicMismatch:
    """A topic that exists with another partition count than the catalog's."""

    name: str
    expected: int
    actual: int


@dataclass(frozen=True)
class TopicReport:
    """The catalog's topics on the broker: created now, already present, missing, mismatched."""

    created: tuple[str, ...] = ()
    present: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    mismatched: tuple[TopicMismatch, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, object]:
        return {
            "created": list(self.created),
            "present": list(self.present),
            "missing": list(self.missing),
            "mismatched": [
                {"name": m.name, "expected": m.expected, "actual": m.actual}
                for m in self.mismatched
            ],
        }


def partition_counts(admin: AdminClient, timeout_s: float) -> dict[str, int]:
    """Every topic on the broker with its partition count."""
    try:
        metadata = admin.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        raise NotReady(f"the broker did not answer a metadata request: {exc}") from exc
    return {name: len(topic.partitions) for name, topic in metadata.topics.items()}


def topic_report(admin: AdminClient, specs: Sequence[TopicSpec], timeout_s: float) -> TopicReport:
    """Compare the broker's topics with `specs` without changing anything."""
    existing = partition_counts(admin, timeout_s)
    present = tuple(s.name for s in specs if existing.get(s.name) == s.partitions)
    missing = tuple(s.name for s in specs if s.name not in existing)
    mismatched = tuple(
        TopicMismatch(s.name, s.partitions, existing[s.name])
        for s in specs
        if s.name in existing and existing[s.name] != s.partitions
    )
    return TopicReport(present=present, missing=missing, mismatched=mismatched)


def ensure_topics(
    admin: AdminClient, specs: Sequence[TopicSpec], *, timeout_s: float = 60.0
) -> TopicReport:
    """Create the missing topics of `specs` and wait until each has a leader on every partition."""
    before = topic_report(admin, specs, timeout_s)
    wanted = [s for s in specs if s.name in set(before.missing)]
    created = _create(admin, wanted, timeout_s) if wanted else ()
    wait_for_leaders(admin, [s.name for s in wanted], timeout_s=timeout_s)
    return TopicReport(
        created=created,
        present=before.present + tuple(n for n in before.missing if n not in created),
        mismatched=before.mismatched,
    )


def _create(admin: AdminClient, specs: Sequence[TopicSpec], timeout_s: float) -> tuple[str, ...]:
    new_topics = [
        # replication_factor=-1: the broker's default.replication.factor (1 locally)
        NewTopic(s.name, num_partitions=s.partitions, replication_factor=-1, config=s.configs)
        for s in specs
    ]
    futures = admin.create_topics(
        new_topics, operation_timeout=timeout_s, request_timeout=timeout_s
    )
    created: list[str] = []
    for name, future in futures.items():
        try:
            future.result(timeout=timeout_s)
            created.append(name)
        except KafkaException as exc:
            error = exc.args[0] if exc.args else None
            if isinstance(error, KafkaError) and error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue  # another process created it meanwhile: fine
            raise InfraError(f"could not create topic {name}: {exc}") from exc
    return tuple(created)


def wait_for_leaders(admin: AdminClient, names: Iterable[str], *, timeout_s: float) -> None:
    """Block until every partition of `names` has a leader, so producers succeed at once."""
    pending = set(names)
    deadline = time.monotonic() + timeout_s
    while pending:
        metadata = admin.list_topics(timeout=max(0.5, deadline - time.monotonic()))
        for name in list(pending):
            topic = metadata.topics.get(name)
            if (
                topic is not None
                and topic.error is None
                and topic.partitions
                and all(p.leader >= 0 for p in topic.partitions.values())
            ):
                pending.discard(name)
        if not pending:
            return
        if time.monotonic() >= deadline:
            raise NotReady(
                f"topics without a leader after {timeout_s:.0f} s: {', '.join(sorted(pending))}; "
                "read the broker log (`sdlcflow status` names it)"
            )
        time.sleep(_POLL_S)
