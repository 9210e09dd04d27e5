"""A faust-free harness around CoordinatorEngine: dict tables, a settable clock, decoding."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sdlcflow.core.events import Event
from sdlcflow.processors.config import ProcessorConfig
from sdlcflow.processors.engine import BatchResult, CoordinatorEngine, Inbound
from sdlcflow.processors.shell import core_config
from sdlcflow.processors.storage import (
    Outbound,
    StoredRepo,
    closed_record,
    decode_index,
    decode_repo,
    encode_closed,
    encode_index,
    encode_repo,
)
from sdlcflow.processors.testing import TestIssuer
from sdlcflow.processors.trust import CredentialGate
from sdlcflow.streams.wire import EventCodec

T0 = 1_700_000_000_000


@dataclass
class Harness:
    """Feeds encoded events to the engine and keeps tables the way the faust shell does."""

    engine: CoordinatorEngine
    codec: EventCodec
    issuer: TestIssuer
    now: list[int]
    states: dict[str, bytes] = field(default_factory=dict)
    closed: dict[str, bytes] = field(default_factory=dict)  # each repository's closed key
    closed_writes: list[str] = field(default_factory=list)  # repositories, in write order
    index: dict[int, bytes] = field(default_factory=dict)
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)

    def record(
        self,
        topic: str,
        event: Event | None = None,
        *,
        partition: int = 0,
        value: bytes | None = None,
        key: bytes | None = None,
    ) -> Inbound:
        offset = self.offsets.get((topic, partition), 0)
        self.offsets[(topic, partition)] = offset + 1
        if event is not None:
            value = self.codec.encode(event)
            key = event.envelope.repo.encode() if key is None else key
        return Inbound(topic, partition, offset, key, value)

    def run(self, records: Sequence[Inbound]) -> BatchResult:
        result = self.engine.process(records, self._load, self._load_index)
        for slot in result.slots.values():
            if slot.closed_changed:
                closed = closed_record(slot.stored_closed, slot.state.closed)
                self.closed[slot.repo] = encode_closed(closed)
                self.closed_writes.append(slot.repo)
            self.states[slot.repo] = encode_repo(StoredRepo(slot.state, tuple(slot.outbox)))
        for partition, repos in result.index.items():
            self.index[partition] = encode_index(repos)
        self.engine.commit(result)
        return result

    def stored(self, repo: str) -> StoredRepo:
        """The repository as the table holds it: its value and its closed key together."""
        return decode_repo(self.states[repo], self.closed.get(repo))

    def _load(self, repo: str, _partition: int) -> StoredRepo | None:
        return self.stored(repo) if repo in self.states else None

    def _load_index(self, partition: int) -> frozenset[str]:
        return decode_index(self.index.get(partition))

    def decoded(self, outbound: Sequence[Outbound], topic: str) -> list[Event]:
        return [self.codec.decode(r.value) for r in outbound if r.topic == topic]


def make_harness() -> Harness:
    issuer = TestIssuer.new()
    now = [T0]
    codec = EventCodec()
    config = ProcessorConfig.from_env().with_options(lease_ttl_ms=10_000)
    engine = CoordinatorEngine(
        core_config(config),
        CredentialGate(issuer.trusted()),
        codec,
        group="unit-coordinator",
        clock=lambda: now[0],
    )
    return Harness(engine, codec, issuer, now)
