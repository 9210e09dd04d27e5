"""Replay: fold `sdlc.coordinator` through the core's `evolve` and compare with the live table.

Invariant 5 (replaying the log from the start rebuilds identical state), checked against a
running or stopped coordinator: the table's latest values are read from its changelog topic
with confluent-kafka, so no faust worker is needed. Decisions republished after a crash carry
the same event ids and are folded once.

The table is read first, the log after it. The coordinator writes a table value before it
publishes its decisions, so the log read later holds every decision the value was built from;
a running coordinator may have decided more since (a tick re-offering a task, say). So a
repository agrees when its table value equals the fold of its decisions up to some point of
the log: the whole log for a stopped coordinator, a prefix of it for a running one (reported
as `behind`). A value that no prefix of the log rebuilds is a difference.
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from sdlcflow.core.events import Event
from sdlcflow.core.fold import evolve
from sdlcflow.core.state import RepoState
from sdlcflow.processors.engine import TICK_REPO_PREFIX
from sdlcflow.processors.storage import repo_of_closed_key, state_plain
from sdlcflow.streams.codec import DecodeError
from sdlcflow.streams.topics import COORDINATOR
from sdlcflow.streams.transient import DEADLINE_S, watermarks
from sdlcflow.streams.wire import EventCodec

NO_TABLE_VALUE = "decisions in the log, no table value"


@dataclass(frozen=True)
class Difference:
    repo: str
    problem: str
    fields: tuple[str, ...] = ()


@dataclass
class ReplayReport:
    decisions: int = 0
    duplicates: int = 0
    undecodable: int = 0
    repos: int = 0
    # repositories whose table value is the fold of a prefix of the log: decided on since
    behind: int = 0
    differences: list[Difference] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "decisions": self.decisions,
            "duplicates": self.duplicates,
            "undecodable": self.undecodable,
            "repos": self.repos,
            "behind": self.behind,
            "differences": [d.__dict__ for d in self.differences],
        }

    def lines(self, changelog: str, verify: bool) -> list[str]:
        """The report for a person, with what to do about repositories the table lacks."""
        lines = [
            f"{self.decisions} decisions ({self.duplicates} duplicates, "
            f"{self.undecodable} undecodable) over {self.repos} repositories"
        ]
        for difference in self.differences:
            fields = f": {', '.join(difference.fields)}" if difference.fields else ""
            lines.append(f"DIFF {difference.repo}: {difference.problem}{fields}")
        unstored = sum(d.problem == NO_TABLE_VALUE for d in self.differences)
        if unstored:
            lines.append(
                f"{unstored} repositories have decisions but no value in {changelog}: if another "
                "coordinator decided them (`sdlcflow demo` runs its own, app id "
                "sdlcflow-demo-<run>), name its app id with --app-id, or check only yours "
                "with --repos"
            )
        if self.behind:
            lines.append(
                f"{self.behind} repositories were decided on after their table value was "
                "read (a running coordinator): each value is the fold of a prefix of the log"
            )
        if verify and not self.differences:
            lines.append(f"no difference between the log and {changelog}")
        return lines


def read_topic(bootstrap: str, topic: str) -> Iterator[tuple[bytes | None, bytes | None]]:
    """Every record of a topic from the start up to the end it had when reading began."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "sdlcflow-replay",
            # we assign partitions and never commit: a replay leaves no trace in the cluster
            "enable.auto.commit": False,
        }
    )
    try:
        metadata = consumer.list_topics(topic, timeout=30)
        partitions = sorted(metadata.topics[topic].partitions) if topic in metadata.topics else []
        deadline = time.monotonic() + DEADLINE_S
        for partition in partitions:
            low, high = watermarks(consumer, TopicPartition(topic, partition), deadline=deadline)
            if high <= low:
                continue
            consumer.assign([TopicPartition(topic, partition, low)])
            position, idle = low, 0
            while position < high and idle < 3:  # compaction and markers leave offset gaps
                messages = consumer.consume(500, timeout=2.0)
                idle = 0 if messages else idle + 1
                for message in messages:
                    if message.error() is not None:
                        continue
                    position = (message.offset() or 0) + 1
                    if position <= high:
                        yield message.key(), message.value()
    finally:
        consumer.close()


def fold_coordinator(
    bootstrap: str,
    patterns: Sequence[str],
    report: ReplayReport,
    history: dict[str, list[Event]] | None = None,
) -> dict[str, RepoState]:
    """Each repository's state rebuilt from the decisions log alone (and, into `history`, the
    decisions folded per repository, in order)."""
    codec = EventCodec()
    states: dict[str, RepoState] = {}
    seen: set[str] = set()
    for key, value in read_topic(bootstrap, COORDINATOR):
        repo = key.decode("utf-8", "replace") if key else ""
        if not _wanted(repo, patterns):
            continue
        try:
            event = codec.decode(value)
        except DecodeError:
            report.undecodable += 1
            continue
        if event.event_id in seen:
            report.duplicates += 1
            continue
        seen.add(event.event_id)
        report.decisions += 1
        states[repo] = evolve(states.get(repo) or RepoState(), event)
        if history is not None:
            history.setdefault(repo, []).append(event)
    return states


def table_states(bootstrap: str, changelog: str, patterns: Sequence[str]) -> dict[str, Any]:
    """The latest plain state per repository in the table's changelog."""
    return plain_states(read_topic(bootstrap, changelog), patterns)


def plain_states(
    records: Iterable[tuple[bytes | None, bytes | None]], patterns: Sequence[str]
) -> dict[str, Any]:
    """The latest plain state per repository among a state table's changelog records: its main
    value and its closed key's value (`storage.py`) put together."""
    latest: dict[str, bytes | None] = {}
    closed: dict[str, bytes | None] = {}
    for key, value in records:
        owner = repo_of_closed_key(key or b"")
        values = latest if owner is None else closed
        repo = ((key or b"") if owner is None else owner).decode("utf-8", "replace")
        if _wanted(repo, patterns):
            values[repo] = value
    return {
        repo: state_plain(value, closed.get(repo))
        for repo, value in latest.items()
        if value is not None
    }


def verify(bootstrap: str, changelog: str, patterns: Sequence[str]) -> ReplayReport:
    report = ReplayReport()
    stored = table_states(bootstrap, changelog, patterns)  # first: see the module docstring
    history: dict[str, list[Event]] = {}
    folded = fold_coordinator(bootstrap, patterns, report, history)
    report.repos = len(set(folded) | set(stored))
    for repo in sorted(set(folded) | set(stored)):
        if repo not in stored:
            report.differences.append(Difference(repo, NO_TABLE_VALUE))
        elif repo not in folded:
            report.differences.append(Difference(repo, "table value without decisions"))
        else:
            mine = folded[repo].to_plain()
            theirs = stored[repo]
            keys = sorted(set(mine) | set(theirs))
            fields = tuple(k for k in keys if mine.get(k) != theirs.get(k))
            if not fields:
                continue
            if _is_prefix_fold(theirs, history.get(repo, [])):
                report.behind += 1
            else:
                report.differences.append(Difference(repo, "state differs", fields))
    return report


def _is_prefix_fold(stored: dict[str, Any], decisions: Sequence[Event]) -> bool:
    """Whether folding some prefix of a repository's decisions gives the stored state."""
    state = RepoState()
    for event in decisions[:-1]:  # the whole fold was compared already
        state = evolve(state, event)
        if state.to_plain() == stored:
            return True
    return False


def _wanted(repo: str, patterns: Sequence[str]) -> bool:
    if not repo or repo.startswith(TICK_REPO_PREFIX):
        return False
    return not patterns or any(fnmatch.fnmatchcase(repo, p) for p in patterns)
