"""Backtest throughput: past policy decisions re-evaluated per second, read from the Cassandra
audit store (`policy backtest --since`) vs the same records from a JSONL export (`--inputs`).

Run: .venv/bin/python benchmarks/backtest_bench.py [--records 1000] [--rounds 3]
Needs the local servers (`sdlcflow up`). Stores `--records` policy results of a fresh
repository in the audit store (times within the last hour) and reads them back as `--repo`
does (the repository's day partitions), then alternates the approaches
`--rounds` times and reports the median records/s of each and their ratio. Prints a table and
writes benchmarks/results/backtest_bench.json with a machine description.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from sdlcflow.agents.bindings.policy import evaluation_record
from sdlcflow.audit.queries import AuditReader
from sdlcflow.audit.rows import Origin, audit_record, placements
from sdlcflow.audit.store import AuditStore, connect
from sdlcflow.audit.writes import rows_of
from sdlcflow.bench.machine import describe_machine
from sdlcflow.core import events as ev
from sdlcflow.core.events import Actor, ActorKind, Envelope, Event
from sdlcflow.policy.backtest import (
    AuditInputSource,
    JsonlInputSource,
    RecordedDecision,
    backtest,
)
from sdlcflow.policy.engine import PolicyEngine
from sdlcflow.policy.inputs import PolicyInput
from sdlcflow.settings import Settings
from sdlcflow.streams.wire import EventCodec

ROOT = Path(__file__).resolve().parent.parent
BUNDLE = ROOT / "sdlcflow" / "policies"


def document(repo: str, i: int) -> PolicyInput:
    """A realistic change: a dozen files (every 7th touches auth), a dependency, green tests."""
    head = f"{i:040x}"
    files = [{"path": f"src/shop/module_{i}_{n}.py"} for n in range(12)]
    if i % 7 == 0:
        files.append({"path": "src/auth/tokens.py"})
    return PolicyInput.model_validate(
        {
            "repo": repo,
            "change_id": f"{repo}-{i}",
            "base_sha": "0" * 40,
            "head_sha": head,
            "files_changed": files,
            "dependency_changes": [
                {"name": "requests", "from_version": "2.31", "to_version": "2.32"}
            ],
            "test_results": [{"suite": "unit", "status": "passed", "sha": head}],
        }
    )


def policy_result(engine: PolicyEngine, repo: str, i: int, at_ms: int) -> tuple[Event, str]:
    """The TaskSucceeded the policy agent would publish, and its JSONL line."""
    doc = document(repo, i)
    decision = engine.evaluate(doc)
    record = evaluation_record(doc, decision)
    outcome = ev.PolicyOutcome(decision.outcome, True, decision.bundle_digest, "sha256:e",
                               decision.reasons(), decision.required_approvals, record)  # fmt: skip
    envelope = Envelope(
        event_id=str(uuid.uuid4()), type="TaskSucceeded", occurred_at=at_ms, repo=repo,
        change_id=f"{repo}-{i}", task_id=f"{repo}-{i}/policy", trace_id=uuid.uuid4().hex,
        causation_id=None, actor=Actor(ActorKind.AGENT, "policy-bench"),
    )  # fmt: skip
    event = Event(envelope, ev.TaskSucceeded("lease", 1, (), ev.Outputs(), policy=outcome))
    line = json.loads(record) | {"recorded_at": at_ms}
    return event, json.dumps(line)


def timed(name: str, count: Callable[[], int]) -> dict[str, Any]:
    started = time.perf_counter()
    n = count()
    seconds = time.perf_counter() - started
    return {"approach": name, "records": n, "seconds": seconds, "records_per_s": n / seconds}


def drain(records: Iterable[RecordedDecision]) -> int:
    return sum(1 for _ in records)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=1000, help="policy results to store")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per approach")
    args = parser.parse_args()

    settings = Settings.from_env()
    engine = PolicyEngine.load(BUNDLE)
    repo = f"bench-backtest/{uuid.uuid4().hex[:8]}"
    now = int(time.time() * 1000)
    made = [policy_result(engine, repo, i, now - 3_000_000 + i) for i in range(args.records)]
    cluster, session = connect(settings)
    try:
        store = AuditStore(session, settings.keyspace)
        codec = EventCodec()  # the store keeps the Avro bytes; JSON is rendered from them
        rows = [
            row
            for offset, (event, _) in enumerate(made)
            for row in rows_of(
                audit_record(event, codec.encode(event), Origin("bench", 0, offset)),
                placements(event),
            )
        ]
        store.write(rows)
        reader = AuditReader(session, settings.keyspace)
        until = int(time.time() * 1000) + 1
        since = now - 3_600_000
        with tempfile.TemporaryDirectory() as tmp:
            jsonl = Path(tmp) / "records.jsonl"
            jsonl.write_text("\n".join(line for _, line in made) + "\n", encoding="utf-8")
            approaches: dict[str, Callable[[], int]] = {
                "audit store (repo partitions): read + parse": lambda: drain(
                    AuditInputSource(reader, until, (repo,)).records(since)
                ),
                "audit store (repo partitions): backtest": lambda: len(
                    backtest(
                        AuditInputSource(reader, until, (repo,)).records(since), engine
                    ).entries
                ),
                "JSONL export: backtest": lambda: len(
                    backtest(JsonlInputSource(jsonl).records(since), engine).entries
                ),
            }
            runs: dict[str, list[dict[str, Any]]] = {name: [] for name in approaches}
            for _ in range(args.rounds):
                for name, count in approaches.items():
                    runs[name].append(timed(name, count))
    finally:
        cluster.shutdown()
    results = []
    for name, measured in runs.items():
        assert all(m["records"] == args.records for m in measured), (name, measured)
        rate = statistics.median(m["records_per_s"] for m in measured)
        each = [round(m["records_per_s"], 1) for m in measured]
        results.append(
            {"approach": name, "median_records_per_s": round(rate, 1), "runs_records_per_s": each}
        )
    jsonl_rate = results[2]["median_records_per_s"]
    print(f"{'approach':45} {'records/s (median)':>20} {'vs JSONL':>9}")
    for row in results:
        ratio = row["median_records_per_s"] / jsonl_rate
        row["ratio_to_jsonl"] = round(ratio, 2)
        print(f"{row['approach']:45} {row['median_records_per_s']:>20} {ratio:>9.2f}")
    out = ROOT / "benchmarks" / "results" / "backtest_bench.json"
    body = {
        "benchmark": "backtest_bench",
        "records": args.records,
        "rounds": args.rounds,
        "bundle_digest": engine.bundle.digest,
        "results": results,
        "machine": describe_machine(),
    }
    out.write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
