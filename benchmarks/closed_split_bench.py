"""Bytes and CPU per table write of a repository that remembers 10,000 closed changes: the closed
map inline in the value (format 1, before) against under its own key, written only by the
batches that close a change (format 2, `sdlcflow/processors/storage.py`).

The engine decides three batches for one repository whose state already holds the closed
changes: a change request (plans, closes nothing), an agent's lease request (a grant, closes
nothing) and the change's cancellation (closes it). For each batch the script repeats what the
shell does with the result before producing the changelog (`CoordinatorShell._write_closed`
and `_write`): encode the table values and put them into a rocksdb store written without a
WAL, like `tablestore.py`. It reports the bytes put (the same bytes go to the changelog) and
the CPU time per table write, the median of the rounds; and the CPU time to load the
repository back (decode). No faust and no broker: the produce itself costs per byte on top.

    .venv/bin/python benchmarks/closed_split_bench.py [--closed 10000] [--reps 300] [--rounds 5]

Needs no Kafka. Writes benchmarks/results/closed_split.json.
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

import orjson
from rocksdict import Options, Rdict, WriteOptions

from sdlcflow.bench.machine import describe_machine
from sdlcflow.core import events as ev
from sdlcflow.core.events import Envelope, Event
from sdlcflow.core.state import Outcome, RepoState
from sdlcflow.processors import storage
from sdlcflow.processors.config import ProcessorConfig
from sdlcflow.processors.engine import BatchResult, CoordinatorEngine, Inbound, Slot
from sdlcflow.processors.shell import core_config
from sdlcflow.processors.storage import StoredRepo
from sdlcflow.processors.testing import TestIssuer, change_request
from sdlcflow.processors.trust import CredentialGate
from sdlcflow.streams.topics import AGENT_EVENTS, CHANGE_REQUESTS, COORDINATOR
from sdlcflow.streams.wire import EventCodec

RESULTS = Path(__file__).resolve().parent / "results" / "closed_split.json"
REPO = "acme/long-lived"
T0 = 1_700_000_000_000
Write = list[tuple[bytes, bytes]]


def format_1_value(stored: StoredRepo) -> bytes:
    """The value as format 1 wrote it (before): the whole state, closed map inline."""
    return orjson.dumps(
        {
            "v": storage.INLINE_CLOSED_VERSION,
            "state": stored.state,
            "outbox": [storage._encode_outbound(record) for record in stored.outbox],
        },
        default=storage._sorted_set,
    )


def write_before(slot: Slot) -> Write:
    stored = StoredRepo(slot.state, tuple(slot.outbox))
    return [(slot.repo.encode(), format_1_value(stored))]


def write_after(slot: Slot) -> Write:
    """The shell's writes: the closed key only when the batch closed a change, then the value."""
    key = slot.repo.encode()
    records = []
    if slot.closed_changed:
        closed = storage.closed_record(slot.stored_closed, slot.state.closed)
        records.append((storage.closed_key(key), storage.encode_closed(closed)))
    records.append((key, storage.encode_repo(StoredRepo(slot.state, tuple(slot.outbox)))))
    return records


def batches(closed: int) -> list[tuple[str, Slot]]:
    """The three batches' slots for a repository that already closed `closed` changes."""
    issuer = TestIssuer.new()
    codec = EventCodec()
    engine = CoordinatorEngine(
        core_config(ProcessorConfig.from_env()),
        CredentialGate(issuer.trusted()),
        codec,
        group="closed-split-bench",
        clock=lambda: T0,
    )
    remembered = {
        str(uuid.uuid5(uuid.NAMESPACE_URL, f"closed/{i}")): Outcome.PROMOTED.value
        for i in range(closed)
    }
    table = {REPO: StoredRepo(RepoState(repo=REPO, closed=remembered))}

    def run(topic: str, event: Event) -> BatchResult:
        record = Inbound(topic, 0, 0, REPO.encode(), codec.encode(event))
        result = engine.process([record], lambda repo, _p: table.get(repo), lambda _p: frozenset())
        engine.commit(result)
        return result

    request = change_request(REPO, at=T0)
    change_id = request.envelope.change_id
    planned = run(CHANGE_REQUESTS, request)
    offers = [codec.decode(r.value) for r in planned.outbound if r.topic == COORDINATOR]
    lint = next(
        e
        for e in offers
        if isinstance(e.payload, ev.TaskOffered) and e.payload.contract.capability == "lint"
    )
    bot = issuer.actor("lint-bot", capabilities=("lint",), issued_at=T0)
    ask = bot.event(
        ev.LeaseRequested("lint"),
        repo=REPO,
        at=T0 + 1,
        change_id=change_id,
        task_id=lint.envelope.task_id,
    )
    granted = run(AGENT_EVENTS, ask)
    cancel_fields = {
        "event_id": str(uuid.uuid4()),
        "type": "ChangeCancelled",
        "occurred_at": T0 + 2,
    }
    cancel = Event(
        Envelope(**{**request.envelope.__dict__, **cancel_fields}), ev.ChangeCancelled("withdrawn")
    )
    cancelled = run(CHANGE_REQUESTS, cancel)
    assert len(cancelled.slots[REPO].state.closed) == closed  # full: the oldest one let go
    return [
        ("change request (closes nothing)", planned.slots[REPO]),
        ("lease request (closes nothing)", granted.slots[REPO]),
        ("cancellation (closes one change)", cancelled.slots[REPO]),
    ]


def cpu_us(action: Callable[[], object], reps: int, rounds: int) -> float:
    """CPU time of one `action`, median over rounds of `reps` repetitions."""
    per_round = []
    for _ in range(rounds):
        started = time.process_time()
        for _ in range(reps):
            action()
        per_round.append((time.process_time() - started) / reps * 1e6)
    return round(statistics.median(per_round), 1)


def open_store(path: str) -> Rdict:
    """A rocksdb store written as `tablestore.py` writes: without a WAL."""
    db = Rdict(path, Options())
    no_wal = WriteOptions()
    no_wal.disable_wal = True  # type: ignore[method-assign,assignment]
    db.set_write_options(no_wal)
    return db


def measure(slot: Slot, write: Callable[[Slot], Write], reps: int, rounds: int) -> dict[str, Any]:
    """Bytes of one table write; CPU of its encoding alone, and of encoding and putting it into
    a fresh store flushed at the end (process time: rocksdb flushes in its own threads)."""
    per_round = []
    for _ in range(rounds):
        with tempfile.TemporaryDirectory(prefix="closed-split-") as tmp:
            db = open_store(tmp)
            started = time.process_time()
            for _ in range(reps):
                for key, value in write(slot):
                    db[key] = value
            db.flush(wait=True)
            per_round.append((time.process_time() - started) / reps * 1e6)
            db.close()
    records = write(slot)
    return {
        "records": len(records),
        "bytes": sum(len(key) + len(value) for key, value in records),
        "encode_cpu_us": cpu_us(lambda: write(slot), reps, rounds),
        "cpu_us_per_write": round(statistics.median(per_round), 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--closed", type=int, default=10_000, help="closed changes remembered")
    parser.add_argument("--reps", type=int, default=300, help="writes per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    load_at_start = os.getloadavg()
    rows: list[dict[str, Any]] = []
    slots = batches(args.closed)
    for name, slot in slots:
        before = measure(slot, write_before, args.reps, args.rounds)
        after = measure(slot, write_after, args.reps, args.rounds)
        rows.append({"batch": name, "before": before, "after": after})
        print(
            f"{name:34s} before {before['bytes']:>8,} B {before['encode_cpu_us']:6.1f} / "
            f"{before['cpu_us_per_write']:6.1f} us | after {after['bytes']:>8,} B in "
            f"{after['records']} record(s) {after['encode_cpu_us']:6.1f} / "
            f"{after['cpu_us_per_write']:6.1f} us  (encode / encode+put+flush)"
        )
    slot = slots[-1][1]  # a load finds the last value written, and its closed key
    stored = StoredRepo(slot.state, tuple(slot.outbox))
    old, main_value = format_1_value(stored), storage.encode_repo(stored)
    closed_value = storage.encode_closed(slot.state.closed)
    load = {
        "before": cpu_us(lambda: storage.decode_repo(old), 20, args.rounds),
        "after": cpu_us(lambda: storage.decode_repo(main_value, closed_value), 20, args.rounds),
    }
    print(f"load (decode) after a restart: before {load['before']} us, after {load['after']} us")
    report = {
        "benchmark": "closed_split",
        "started_at": time.time(),
        "machine": describe_machine(),
        "load_average_at_start": load_at_start,
        "load_average_at_end": os.getloadavg(),
        "closed": args.closed,
        "reps": args.reps,
        "rounds": args.rounds,
        "writes": rows,
        "load_cpu_us": load,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
