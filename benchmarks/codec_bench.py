"""Encode/decode throughput of the wire codec for typical events, beside orjson on the same data.

    .venv/bin/python benchmarks/codec_bench.py [--quick]

Reports records/s on one core: single thread, timed in process CPU time (so that other processes
competing for the cores do not count), best of several repeats. For:
  - sdlcflow's EventCodec with compiled per-type encoders/decoders (what producers and consumers
    use), dataclass -> Confluent frame -> dataclass;
  - the same through fastavro's generic schemaless writer/reader (the fallback for old writers);
  - orjson: dataclass -> JSON bytes (orjson serialises dataclasses natively) and JSON bytes ->
    dict -> dataclass, i.e. the same work a JSON wire format would do.
Writes benchmarks/results/codec_bench.json with the machine description.
"""

from __future__ import annotations

import json
import os
import sys
import time
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sdlcflow.bench.machine import describe_machine
from sdlcflow.core.events import (
    Actor,
    ActorKind,
    ArtifactRef,
    ChangeRequested,
    Envelope,
    Event,
    LeaseGranted,
    LeaseHeartbeat,
    Outputs,
    TaskSucceeded,
    VerifiedState,
)
from sdlcflow.streams.codec import Codec
from sdlcflow.streams.records import record_decoder
from sdlcflow.streams.registry import LocalSchemaRegistry
from sdlcflow.streams.wire import EventCodec

TARGET = 100_000
RESULTS = Path(__file__).resolve().parent / "results" / "codec_bench.json"


def _envelope(event_type: str, actor: Actor) -> Envelope:
    return Envelope(
        event_id="6f1d2c3b-8a9e-4f70-b1c2-d3e4f5a6b7c8",
        type=event_type,
        occurred_at=1_767_225_600_123,
        repo="acme/web",
        change_id="0b7e5c52-4a1f-4d2e-9f3a-7c6b5a4d3e2f",
        task_id="test",
        trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
        causation_id="9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d",
        actor=actor,
        signature="ed25519:" + "ab" * 32,
    )


def typical_events() -> dict[str, Event]:
    """A small, a typical and a large event as the coordinator and agents exchange them."""
    coordinator = Actor(ActorKind.COORDINATOR, "coordinator")
    agent = Actor(ActorKind.AGENT, "test-agent-7")
    head, base = "3f" * 20, "9c" * 20
    inputs = (ArtifactRef("source", head), ArtifactRef("lockfile", "sha256:" + "1d" * 32))
    return {
        "LeaseHeartbeat (small)": Event(
            _envelope("LeaseHeartbeat", agent), LeaseHeartbeat(lease_id="lease-42", epoch=3)
        ),
        "LeaseGranted (typical)": Event(
            _envelope("LeaseGranted", coordinator),
            LeaseGranted(
                lease_id="lease-42",
                holder="test-agent-7",
                epoch=3,
                expires_at=1_767_225_660_123,
                attempt=1,
                inputs=inputs,
            ),
        ),
        "ChangeRequested (typical)": Event(
            _envelope("ChangeRequested", Actor(ActorKind.PRODUCER, "ci")),
            ChangeRequested(
                kind="dependency-update",
                template="promotion",
                base_sha=base,
                head_sha=head,
                lockfile_digest="sha256:" + "1d" * 32,
                title="bump auth-lib to 4.2.0",
                paths=("requirements.lock", "src/auth/**"),
                labels=("deps",),
            ),
        ),
        "TaskSucceeded (large)": Event(
            _envelope("TaskSucceeded", agent),
            TaskSucceeded(
                lease_id="lease-42",
                epoch=3,
                inputs=inputs,
                touched=Outputs(paths=("reports/junit.xml",)),
                artifacts=(ArtifactRef("junit", "sha256:" + "77" * 32),),
                verified=VerifiedState(head, base, "sha256:" + "1d" * 32, "", ""),
            ),
        ),
    }


def rate(work: Callable[[], Any], seconds: float, repeats: int) -> float:
    """Calls per CPU-second of `work`, best of `repeats` runs of about `seconds` each."""
    cpu = time.process_time
    number = max(1, int(seconds / max(timeit.timeit(work, number=200, timer=cpu) / 200, 1e-9)))
    best = min(timeit.repeat(work, number=number, repeat=repeats, timer=cpu))
    return number / best


def measure(event: Event, seconds: float, repeats: int) -> dict[str, float]:
    registry = LocalSchemaRegistry.default()
    compiled = EventCodec(Codec(registry=registry))
    generic = EventCodec(Codec(registry=registry), compiled=False)
    frame = compiled.encode(event)
    assert compiled.decode(frame) == event == generic.decode(frame)
    assert generic.encode(event) == frame
    as_json = orjson.dumps(event)
    envelope_of, payload_of = record_decoder(Envelope), record_decoder(type(event.payload))

    def from_json() -> Event:
        data = orjson.loads(as_json)
        return Event(envelope_of(data["envelope"]), payload_of(data["payload"]))

    return {
        "avro_bytes": len(frame),
        "json_bytes": len(as_json),
        "avro_compiled_encode_per_s": rate(lambda: compiled.encode(event), seconds, repeats),
        "avro_compiled_decode_per_s": rate(lambda: compiled.decode(frame), seconds, repeats),
        "avro_fastavro_encode_per_s": rate(lambda: generic.encode(event), seconds, repeats),
        "avro_fastavro_decode_per_s": rate(lambda: generic._decode_slow(frame), seconds, repeats),
        "orjson_encode_per_s": rate(lambda: orjson.dumps(event), seconds, repeats),
        "orjson_decode_per_s": rate(from_json, seconds, repeats),
    }


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    seconds, repeats = (0.05, 2) if quick else (0.3, 5)
    started = time.time()
    results = {name: measure(event, seconds, repeats) for name, event in typical_events().items()}
    width = max(len(n) for n in results)
    print(
        f"{'event':<{width}}  {'bytes':>5}  {'enc/s':>9} {'dec/s':>9}  "
        f"{'fastavro enc/s':>14} {'dec/s':>9}  {'orjson enc/s':>12} {'dec/s':>9}"
    )
    for name, r in results.items():
        print(
            f"{name:<{width}}  {r['avro_bytes']:>5.0f}  {r['avro_compiled_encode_per_s']:>9,.0f} "
            f"{r['avro_compiled_decode_per_s']:>9,.0f}  {r['avro_fastavro_encode_per_s']:>14,.0f} "
            f"{r['avro_fastavro_decode_per_s']:>9,.0f}  {r['orjson_encode_per_s']:>12,.0f} "
            f"{r['orjson_decode_per_s']:>9,.0f}"
        )
    typical = [r for n, r in results.items() if "typical" in n]
    meets = all(
        r["avro_compiled_encode_per_s"] >= TARGET and r["avro_compiled_decode_per_s"] >= TARGET
        for r in typical
    )
    print(
        f"target >= {TARGET:,}/s encode and decode per core on typical events: "
        f"{'met' if meets else 'NOT met'} (load average {os.getloadavg()[0]:.1f})"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "benchmark": "codec_bench",
        "started_at": started,
        "target_per_s": TARGET,
        "target_met_on_typical": meets,
        "machine": describe_machine(),
        "results": results,
    }
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
