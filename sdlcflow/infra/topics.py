"""Creating the catalog's topics on a broker: only the missing ones, and saying which existing
ones disagree with the catalog (a partition count cannot be lowered, and raising it would move
repositories to other partitions and break their ordering, so we report instead of altering).

And deleting what one run (a test, a benchmark, the demo) made on a shared broker: its own
topics, its consumer groups and the internal topics of its faust app ids, never anything else.
Left behind, they pile up run after run in the broker's state dir, and start-up, metadata
requests and the broker's memory grow with every partition.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from sdlcflow.infra.errors import InfraError, NotReady
from sdlcflow.streams.topics import TopicSpec

log = logging.getLogger(__name__)

_POLL_S = 0.2
# already gone: what deleting it was for
_GONE = frozenset({KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError.GROUP_ID_NOT_FOUND})


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


def forget_on_broker(
    bootstrap: str,
    *,
    app_ids: Iterable[str] = (),
    topics: Iterable[str] = (),
    groups: Iterable[str] = (),
    timeout_s: float = 30.0,
) -> list[str]:
    """Delete exactly what a run made: `topics`, `groups`, and for each faust app id its
    internal topics (changelogs, repartitions, its leader topic: all `<app id>-...`) and its
    consumer groups (`<app id>`, `<app id>-...`). Others share the broker, so nothing is found
    by a looser pattern. Call it once the run's processes stopped (a live faust worker recreates
    its topics). Returns what could not be deleted; something already gone is no problem."""
    apps = tuple(app_ids)
    try:
        return _forget(
            AdminClient({"bootstrap.servers": bootstrap}), apps, topics, groups, timeout_s
        )
    except (KafkaException, TimeoutError) as exc:
        return [f"the run's topics and groups on {bootstrap} ({', '.join(apps)}): {exc}"]


def _forget(
    admin: AdminClient,
    app_ids: tuple[str, ...],
    topics: Iterable[str],
    groups: Iterable[str],
    timeout_s: float,
) -> list[str]:
    def of_an_app(name: str) -> bool:
        return any(name == app or name.startswith(f"{app}-") for app in app_ids)

    own_topics = set(topics)
    own_groups = set(groups)
    if app_ids:
        own_topics.update(t for t in admin.list_topics(timeout=timeout_s).topics if of_an_app(t))
        listed = admin.list_consumer_groups(request_timeout=timeout_s).result(timeout=timeout_s)
        own_groups.update(g.group_id for g in listed.valid if of_an_app(g.group_id))
    problems: list[str] = []
    if own_topics:
        deleting = admin.delete_topics(sorted(own_topics), operation_timeout=timeout_s)
        for topic, future in deleting.items():
            problems += _failed(f"topic {topic}", future, timeout_s)
    if own_groups:
        deleting = admin.delete_consumer_groups(sorted(own_groups), request_timeout=timeout_s)
        for group, future in deleting.items():
            problems += _failed(f"group {group}", future, timeout_s)
    return problems


def _failed(what: str, future: Future[None], timeout_s: float) -> list[str]:
    try:
        future.result(timeout=timeout_s)
    except KafkaException as exc:
        error = exc.args[0] if exc.args else None
        if isinstance(error, KafkaError) and error.code() in _GONE:
            return []
        return [f"{what}: {exc}"]
    except TimeoutError:
        return [f"{what}: no answer within {timeout_s:.0f} s"]
    return []


@dataclass
class BrokerFootprint:
    """What one run makes on a shared broker, named as it is made, so the run can delete
    exactly that when it ends (`forgotten_at_exit`)."""

    bootstrap: str
    app_ids: list[str] = field(default_factory=list)
    topics: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)

    def app(self, app_id: str) -> str:
        """A faust app id of the run (its topics and groups are found by it); returned."""
        self.app_ids.append(app_id)
        return app_id

    def topic(self, name: str) -> str:
        """A topic the run creates; returned."""
        self.topics.append(name)
        return name

    def group(self, name: str) -> str:
        """A consumer group the run commits offsets in; returned."""
        self.groups.append(name)
        return name

    def forget(self, timeout_s: float = 30.0) -> list[str]:
        """Delete everything named so far; what could not be deleted."""
        return forget_on_broker(
            self.bootstrap,
            app_ids=self.app_ids,
            topics=self.topics,
            groups=self.groups,
            timeout_s=timeout_s,
        )


@contextmanager
def forgotten_at_exit(bootstrap: str) -> Iterator[BrokerFootprint]:
    """A footprint deleted from the broker when the block ends, also on an error; enter it
    before starting the run's processes, so they have stopped by the time it is deleted."""
    footprint = BrokerFootprint(bootstrap)
    try:
        yield footprint
    finally:
        for problem in footprint.forget():
            log.warning("left on the broker: %s", problem)
