"""The offer consumer's flow control, on the real broker.

Read-ahead: offers beyond the free slots are held, in order, up to a backlog; only a full
backlog pauses the partitions. Pausing whenever every slot was busy made each freed slot wait
~1 s for librdkafka's resumed fetch (64 slots took 64 offers/s in the benchmark).

Across a rebalance: librdkafka keeps a partition paused when it stays with the same consumer.
An agent that was paused when another agent joined, and whose slot freed during the
rebalance, used to believe itself unpaused while librdkafka still held its partitions paused:
it never took another offer (chaos runs left changes open for minutes).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from sdlcflow.agents import task_contract
from sdlcflow.agents._transport import (
    HELD_PER_OFFER,
    OfferBatch,
    OfferConsumer,
    Partitions,
    Skipped,
    repo_matcher,
)
from sdlcflow.core import events as ev
from sdlcflow.core.events import Actor, ActorKind, Envelope, Event
from sdlcflow.infra.topics import BrokerFootprint, ensure_topics
from sdlcflow.streams.consumer import Delivery
from sdlcflow.streams.topics import TopicSpec
from sdlcflow.streams.wire import EventCodec

pytestmark = pytest.mark.integration

PARTITIONS = 4
WAIT_S = 30.0


def _offer(number: int, owner: str = "flow") -> Event:
    change_id = str(uuid.uuid4())
    envelope = Envelope(
        event_id=str(uuid.uuid4()), type="TaskOffered", occurred_at=int(time.time() * 1000),
        repo=f"{owner}/repo-{number}", change_id=change_id, task_id=f"{change_id}/lint",
        trace_id=uuid.uuid4().hex, causation_id=None, actor=Actor(ActorKind.COORDINATOR, "c"),
    )  # fmt: skip
    return Event(envelope, ev.TaskOffered(task_contract("lint"), 1, 1, ev.OfferReason.READY))


class _Agent:
    """One offer consumer with one slot; the test decides when the slot is released."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        group: str,
        release_on_revoke: bool,
        backlog: int = 0,
        repos: str = "flow/*",
    ) -> None:
        self.offers: list[Delivery] = []
        self.skipped = 0
        self.got_offer = threading.Event()
        self.release_on_revoke = release_on_revoke
        self.consumer = OfferConsumer(
            config={"bootstrap.servers": bootstrap, "group.id": group,
                    "enable.auto.commit": False, "auto.offset.reset": "earliest"},
            topics=[topic], codec=EventCodec(), group_id=group, slots=1,
            deliver=self._deliver, revoked=self._revoked, backlog=backlog,
            wanted_repo=repo_matcher((repos,)),
        )  # fmt: skip

    def _deliver(self, batch: OfferBatch) -> None:
        self.offers.extend(item for item in batch if isinstance(item, Delivery))
        self.skipped += sum(isinstance(item, Skipped) for item in batch)
        self.got_offer.set()

    def _revoked(self, _partitions: Partitions) -> None:
        if self.release_on_revoke and self.offers:
            self.release_on_revoke = False
            self.consumer.release_slot()  # the busy task ends while the group rebalances


@pytest.fixture
def topic(kafka_bootstrap: str, footprint: BrokerFootprint) -> str:
    name = footprint.topic(f"test-offer-flow-{uuid.uuid4().hex[:8]}")
    ensure_topics(AdminClient({"bootstrap.servers": kafka_bootstrap}),
                  [TopicSpec(name, PARTITIONS, {})])  # fmt: skip
    return name


@pytest.fixture
def producer(kafka_bootstrap: str) -> Iterator[Producer]:
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    yield producer
    producer.flush(10)


def _produce(
    producer: Producer, topic: str, partition: int, number: int, owner: str = "flow"
) -> None:
    event = _offer(number, owner)
    producer.produce(topic, EventCodec().encode(event), event.envelope.repo.encode(),
                     partition=partition)  # fmt: skip
    producer.flush(10)


def _wait(condition: object, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {WAIT_S:.0f} s waiting for {what}")
        time.sleep(0.05)


class TestOfferReadAhead:
    """A busy agent reads offers ahead up to its backlog, pauses only then, hands them over in
    offer order as slots free, and resumes once half the backlog is worked off."""

    def test_offers_beyond_the_free_slots_are_read_ahead_until_the_backlog_is_full(
        self, kafka_bootstrap: str, topic: str, producer: Producer, footprint: BrokerFootprint
    ) -> None:
        group = footprint.group(f"test-offer-flow-{uuid.uuid4().hex[:8]}")
        agent = _Agent(kafka_bootstrap, topic, group, release_on_revoke=False, backlog=4)
        consumer = agent.consumer
        consumer.start()
        try:
            for number in range(8):
                _produce(producer, topic, 0, number)
            _wait(lambda: consumer.read_ahead == 4 and consumer.paused,
                  "the backlog to fill and the partitions to pause")  # fmt: skip
            assert len(agent.offers) == 1  # one slot: one offer handed over, four read ahead

            for taken in (2, 3):
                consumer.release_slot()
                _wait(lambda n=taken: len(agent.offers) == n,  # type: ignore[misc]
                      "a held offer for the freed slot")  # fmt: skip
                assert consumer.paused  # half the backlog or more is still held

            consumer.release_slot()
            _wait(lambda: len(agent.offers) == 4 and not consumer.paused,
                  "the resume once less than half the backlog is held")  # fmt: skip
            for taken in range(5, 9):
                consumer.release_slot()
                _wait(lambda n=taken: len(agent.offers) == n, f"offer {taken}")  # type: ignore[misc]

            repos = [offer.event.envelope.repo for offer in agent.offers]
            assert repos == [f"flow/repo-{number}" for number in range(8)]
        finally:
            consumer.close()

    def test_skipped_messages_held_behind_a_waiting_offer_are_capped(
        self, kafka_bootstrap: str, topic: str, producer: Producer
    ) -> None:
        agent = _Agent(kafka_bootstrap, topic, f"test-offer-flow-{uuid.uuid4().hex[:8]}",
                       release_on_revoke=False, backlog=2)  # fmt: skip
        consumer = agent.consumer
        cap = HELD_PER_OFFER * 2
        consumer.start()
        try:
            for number in range(2):
                _produce(producer, topic, 0, number)
            for number in range(3 * cap):  # another agent group's repositories: skipped
                _produce(producer, topic, 0, number, owner="elsewhere")
            _wait(lambda: consumer.paused, "the pause once the held messages reach their cap")
            assert consumer.held_messages == cap and consumer.read_ahead == 1

            consumer.release_slot()
            _wait(lambda: len(agent.offers) == 2 and agent.skipped == 3 * cap,
                  "the held offer and every skipped message after it")  # fmt: skip
            assert not consumer.paused and consumer.held_messages == 0
        finally:
            consumer.close()


class TestOfferFlowAcrossARebalance:
    """A partition that stays with a paused consumer is resumed once a slot frees."""

    def test_an_agent_paused_through_a_rebalance_takes_offers_again_when_its_slot_frees(
        self, kafka_bootstrap: str, topic: str, producer: Producer, footprint: BrokerFootprint
    ) -> None:
        group = footprint.group(f"test-offer-flow-{uuid.uuid4().hex[:8]}")
        first = _Agent(kafka_bootstrap, topic, group, release_on_revoke=True)
        second = _Agent(kafka_bootstrap, topic, group, release_on_revoke=False)
        first.consumer.start()
        try:
            _produce(producer, topic, 0, 0)
            _wait(first.got_offer.is_set, "the first offer")  # its only slot is busy now
            second.consumer.start()
            for partition in range(PARTITIONS):
                _produce(producer, topic, partition, partition + 1)
            # the second agent takes an offer once the group has split the partitions
            _wait(second.got_offer.is_set, "an offer to the agent that joined")
            _wait(lambda: len(first.offers) == 2,
                  "an offer on a partition that stayed with the first agent")  # fmt: skip
            assert first.offers[1].partition != second.offers[0].partition
        finally:
            second.consumer.close()
            first.consumer.close()
