"""How long the coordinator stalls after its worker is killed -9 and started again.

    .venv/bin/python benchmarks/coordinator_restart_bench.py [--rounds 3] [--session-timeouts 60,10]

Runs one coordinator worker (own app id, data dir and repositories) on the configured Kafka,
submits a change and waits for its plan, then `rounds` times: SIGKILL the worker, start it
again at once, submit a change, and time restart -> that change's ChangePlanned. The worker
rejoins its group as a new member, so the group cannot rebalance before the dead member's
session expires: the figure follows the consumer session timeout. Each listed session timeout
(faust's `BROKER_SESSION_TIMEOUT`, which overrides the app's setting) is measured in turn, in
one run, side by side. Only the benchmark's own worker is killed; the servers are not touched.
Writes benchmarks/results/coordinator_restart_bench.json with the machine description.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sdlcflow.bench.machine import describe_machine
from sdlcflow.chaos.processes import Children
from sdlcflow.core.events import ChangePlanned
from sdlcflow.infra.topics import forgotten_at_exit
from sdlcflow.processors.testing import TestIssuer, change_request
from sdlcflow.settings import Settings
from sdlcflow.streams.codec import DecodeError
from sdlcflow.streams.producer import EventPublisher
from sdlcflow.streams.topics import CHANGE_REQUESTS, COORDINATOR
from sdlcflow.streams.transient import DEADLINE_S, watermarks
from sdlcflow.streams.wire import EventCodec

RESULTS = Path(__file__).resolve().parent / "results" / "coordinator_restart_bench.json"
PLAN_DEADLINE_S = 300.0


class PlanWatcher:
    """Reads sdlc.coordinator from its current end and reports when a change was planned."""

    def __init__(self, bootstrap: str, partitions: int) -> None:
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"restart-bench-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
            }
        )
        ends = []
        deadline = time.monotonic() + DEADLINE_S
        for partition in range(partitions):
            where = TopicPartition(COORDINATOR, partition)
            _low, high = watermarks(self._consumer, where, deadline=deadline)
            ends.append(TopicPartition(COORDINATOR, partition, high))
        self._consumer.assign(ends)
        self._codec = EventCodec()

    def first_plan(self, submit: Callable[[], str], deadline_s: float) -> float:
        """Submit a change every second until one is planned; when (monotonic) it was read.

        Resubmitting covers a worker that sets a new group's offsets to the end after a
        change was sent, so that change is never read."""
        deadline = time.monotonic() + deadline_s
        sent: set[str] = set()
        next_submit = 0.0
        while True:
            now = time.monotonic()
            if now > deadline:
                raise TimeoutError(f"none of {len(sent)} changes planned within {deadline_s} s")
            if now >= next_submit:
                sent.add(submit())
                next_submit = now + 1.0
            message = self._consumer.poll(0.1)
            if message is None or message.error() is not None:
                continue
            try:
                event = self._codec.decode(message.value() or b"")
            except DecodeError:
                continue
            if isinstance(event.payload, ChangePlanned) and event.envelope.change_id in sent:
                return time.monotonic()

    def close(self) -> None:
        self._consumer.close()


def measure(session_timeout_s: int, rounds: int, settings: Settings) -> list[float]:
    """Restart -> first plan, in seconds, for each round under one session timeout."""
    run_id = uuid.uuid4().hex[:8]
    repo = f"restart-{run_id}/web"
    with (
        forgotten_at_exit(settings.kafka_bootstrap) as footprint,
        tempfile.TemporaryDirectory(prefix="restart-bench-") as scratch,
    ):
        work = Path(scratch)
        trust = TestIssuer.new().write_trust_file(work / "trusted-issuers.json")
        args = [
            "run", "processors", "--app-id", footprint.app(f"restart-bench-{run_id}"),
            "--data-dir", str(work / "processors"), "--store", "rocksdb", "--from-end",
            "--repos", f"restart-{run_id}/*", "--trusted-issuers", str(trust),
            "--loglevel", "warning",
        ]  # fmt: skip
        env = {"BROKER_SESSION_TIMEOUT": str(session_timeout_s)}
        watcher = PlanWatcher(settings.kafka_bootstrap, settings.partitions)
        publisher = EventPublisher(settings.kafka_bootstrap)
        try:
            with Children(work / "logs", dict(os.environ)) as children:
                worker = children.spawn("coordinator", args, env)

                def submit() -> str:
                    request = change_request(repo, at=int(time.time() * 1000))
                    publisher.publish(CHANGE_REQUESTS, request)
                    publisher.flush(30)
                    return request.envelope.change_id or ""

                watcher.first_plan(submit, PLAN_DEADLINE_S)  # the worker is up and joined
                stalls = []
                for _ in range(rounds):
                    worker.kill()
                    worker.start()
                    restarted = time.monotonic()
                    stalls.append(watcher.first_plan(submit, PLAN_DEADLINE_S) - restarted)
                    print(
                        f"  session {session_timeout_s:>3} s: plan {stalls[-1]:.1f} s after restart"
                    )
                return stalls
        finally:
            publisher.__exit__(None, None, None)
            watcher.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--session-timeouts", default="60,10", help="seconds, comma-separated")
    options = parser.parse_args(argv)
    settings = Settings.from_env()
    timeouts = [int(t) for t in options.session_timeouts.split(",")]
    load_before = os.getloadavg()
    figures: dict[str, Any] = {}
    for timeout in timeouts:
        stalls = measure(timeout, options.rounds, settings)
        median = round(statistics.median(stalls), 2)
        figures[f"session_{timeout}s"] = {
            "stalls_s": [round(s, 2) for s in stalls],
            "median_s": median,
        }
        print(f"session timeout {timeout} s: median stall {median} s")
    result = {
        "benchmark": "coordinator_restart",
        "rounds": options.rounds,
        "figures": figures,
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "machine": describe_machine(),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
