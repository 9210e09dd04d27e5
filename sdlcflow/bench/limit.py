"""The machine's limit for our message pattern: a bare confluent-kafka round trip over the same
two hops as a lease (agent -> coordinator -> agent), with no logic, no codec, no signatures.

A relay process consumes topic A and produces each record unchanged to topic B; the client
produces to A and consumes B. Topics are the run's own (`bench-<run>-limit-a/b`) and are
deleted afterwards.

    python -m sdlcflow.bench.limit relay --bootstrap HOST:PORT --source A --sink B
"""

from __future__ import annotations

import argparse
import signal
import struct
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from sdlcflow.bench.processes import ProcessSet
from sdlcflow.bench.stats import rate, summarize

# the same delivery guarantees the sdlcflow producers use: idempotent, acks=all, small linger
PRODUCER = {"enable.idempotence": True, "acks": "all", "linger.ms": 1}
STAMP = struct.Struct(">q")  # send time, ns since the epoch (one clock: one machine)
PAYLOAD_PAD = b"x" * 600  # about the size of an Avro lease request with its credential


def _consumer(bootstrap: str, topic: str, partitions: int) -> Consumer:
    """Every partition of the run's own (new, empty) topic, assigned from its start: no group
    membership, so a long pause between measurements cannot cost a rebalance."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-limit-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 5,  # latency over batching, like a coordinator's consumer
        }
    )
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
    return consumer


def _drain(consumer: Consumer, wait_s: float) -> list[Any]:
    """What is there now: wait for one record, then take the rest without waiting (a bare
    `consume(n, timeout)` holds every batch until n records or the timeout)."""
    first = consumer.poll(wait_s)
    if first is None:
        return []
    return [first, *consumer.consume(999, 0)]


def relay(bootstrap: str, source: str, sink: str, partitions: int) -> None:
    """Hop 2 -> 3: consume A, produce B, until SIGTERM."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    consumer = _consumer(bootstrap, source, partitions)
    producer = Producer({"bootstrap.servers": bootstrap, **PRODUCER})
    while not stop.is_set():
        for message in _drain(consumer, 0.05):
            if message.error() is None:
                producer.produce(sink, message.value(), message.key())
        producer.poll(0)
    producer.flush(5)
    consumer.close()


class LimitRun:
    """The client side: produce to A at a rate (or all at once), time each record's arrival on B."""

    def __init__(self, bootstrap: str, procs: ProcessSet, partitions: int) -> None:
        self.bootstrap = bootstrap
        self.procs = procs
        run = uuid.uuid4().hex[:8]
        self.source, self.sink = f"bench-{run}-limit-a", f"bench-{run}-limit-b"
        self.partitions = partitions
        self.admin = AdminClient({"bootstrap.servers": bootstrap})
        self.consumer: Consumer | None = None
        self.producer = Producer({"bootstrap.servers": bootstrap, **PRODUCER})

    def start(self) -> None:
        topics = [NewTopic(t, self.partitions, 1) for t in (self.source, self.sink)]
        for future in self.admin.create_topics(topics, operation_timeout=30).values():
            future.result(30)
        self.procs.start(
            "limit-relay",
            ["-m", "sdlcflow.bench.limit", "relay", "--bootstrap", self.bootstrap,
             "--source", self.source, "--sink", self.sink,
             "--partitions", str(self.partitions)],
        )  # fmt: skip
        self.consumer = _consumer(self.bootstrap, self.sink, self.partitions)
        self._measure(20, None, timeout_s=120)  # relay and consumers assigned and serving

    def _measure(self, count: int, per_s: float | None, timeout_s: float) -> dict[str, Any]:
        received: list[float] = []
        last_arrival = [0.0]
        done = threading.Event()
        consumer = self.consumer
        assert consumer is not None, "start() first"

        def consume() -> None:
            while len(received) < count and not done.is_set():
                for message in _drain(consumer, 0.05):
                    if message.error() is None:
                        sent = STAMP.unpack_from(message.value())[0]
                        received.append((time.time_ns() - sent) / 1e6)
                        last_arrival[0] = time.perf_counter()

        reader = threading.Thread(target=consume, daemon=True)
        reader.start()
        started = time.perf_counter()
        offsets = [i / per_s for i in range(count)] if per_s else [0.0] * count
        for index, offset in enumerate(offsets):
            while per_s and (lag := started + offset - time.perf_counter()) > 0:
                time.sleep(min(lag, 0.005))
            key = f"r{index % 200}".encode()
            while True:
                try:
                    self.producer.produce(
                        self.source, STAMP.pack(time.time_ns()) + PAYLOAD_PAD, key
                    )
                    break
                except BufferError:
                    self.producer.poll(0.05)
            self.producer.poll(0)
        self.producer.flush(30)
        send_s = time.perf_counter() - started
        reader.join(timeout_s)
        done.set()
        reader.join(5)
        self.procs.check()
        return {
            "round_trips": len(received),
            "sent": count,
            "offered_per_s": per_s,
            "send_s": round(send_s, 2),
            # first send to last arrival: a reader left waiting for lost records adds nothing
            "round_trips_per_s": round(rate(len(received), last_arrival[0] - started), 1),
            "round_trip_ms": summarize(received).to_json(2),
        }

    def blast(self, count: int) -> dict[str, Any]:
        """As fast as possible: the throughput ceiling of two hops on this broker."""
        return self._measure(count, None, timeout_s=180)

    def at_rate(self, per_s: float, seconds: float) -> dict[str, Any]:
        return self._measure(max(1, int(per_s * seconds)), per_s, timeout_s=seconds + 60)

    def close(self) -> None:
        self.procs.stop("limit-relay")
        if self.consumer is not None:
            self.consumer.close()
        for future in self.admin.delete_topics([self.source, self.sink]).values():
            future.exception(30)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="the bare two-hop Kafka relay of the limit run")
    parser.add_argument("role", choices=["relay"])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--source", required=True)
    parser.add_argument("--sink", required=True)
    parser.add_argument("--partitions", type=int, required=True)
    args = parser.parse_args(argv)
    relay(args.bootstrap, args.source, args.sink, args.partitions)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
