"""The coordinator engine's CPU per lease grant, two source trees side by side (A/B).

The engine mode of `coordinator_bench.py` (decode, credential and signature checks, core,
encode; no Kafka, no faust) run in fresh subprocesses that alternate between a "before" tree
(e.g. a worktree of an older commit) and an "after" tree (default: this checkout), so both
see the same machine load. CPU time per grant (process time) is what compares on a busy
machine; the medians and their ratio are printed and written with the machine's load.

    git worktree add /tmp/sdlcflow-before <old commit>
    .venv/bin/python benchmarks/engine_ab.py --before /tmp/sdlcflow-before [--rounds 5]

Needs no Kafka. Writes benchmarks/results/coordinator_engine_ab.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "coordinator_engine_ab.json"
WARM_REPOS = 20  # pushed through the same engine first: the codec compiles per event type


def measure(repos: int) -> dict[str, Any]:
    """One engine-mode measurement in this process, with the sdlcflow on sys.path."""
    sys.path.insert(0, str(HERE))
    import coordinator_bench as bench

    from sdlcflow.processors.engine import CoordinatorEngine
    from sdlcflow.processors.testing import TestIssuer
    from sdlcflow.processors.trust import CredentialGate
    from sdlcflow.streams.topics import AGENT_EVENTS, CHANGE_REQUESTS
    from sdlcflow.streams.wire import EventCodec

    issuer = TestIssuer.new()
    actor = issuer.actor(
        "bench-agent",
        capabilities=bench.CAPABILITIES,
        repos=("bench-*",),
        issued_at=int(time.time() * 1000) - 1000,
    )
    prefix = f"bench-{uuid.uuid4().hex[:8]}/"
    warm = bench.build_mix((f"{prefix}w{i}" for i in range(WARM_REPOS)), actor, prefix, full=True)
    mix = bench.build_mix((f"{prefix}t{i}" for i in range(repos)), actor, prefix, full=True)
    codec = EventCodec()
    gate = CredentialGate(issuer.trusted(), max_clock_skew_ms=10**9, credential_grace_ms=10**9)
    engine = CoordinatorEngine(bench._core(), gate, codec, group="bench")
    partitions = 12
    for part in (warm, mix):
        bench._run_engine(
            engine, bench._inbound(part.requests, codec, CHANGE_REQUESTS, partitions), 500
        )
    bench._run_engine(
        engine, bench._inbound(warm.agent_inputs, codec, AGENT_EVENTS, partitions), 500
    )
    agent = bench._inbound(mix.agent_inputs, codec, AGENT_EVENTS, partitions)
    cpu, wall = time.process_time(), time.perf_counter()
    decisions, grants = bench._run_engine(engine, agent, 500)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {
        "inputs": len(agent),
        "grants": grants,
        "decisions": decisions,
        "cpu_s": round(cpu, 4),
        "wall_s": round(wall, 4),
        "cpu_ms_per_grant": round(cpu / grants * 1000, 4),
    }


def run_child(tree: Path, repos: int) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(tree))
    out = subprocess.run(
        [sys.executable, __file__, "--child", "--repos", str(repos)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", type=Path, help="source tree of the baseline (A)")
    parser.add_argument("--after", type=Path, default=HERE.parent, help="tree B (default: here)")
    parser.add_argument("--rounds", type=int, default=5, help="A/B pairs, alternating")
    parser.add_argument("--repos", type=int, default=300, help="repositories (5 grants each)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.repos)))
        return 0
    if args.before is None:
        parser.error("--before is required: a source tree of the commit to compare against")
    sys.path.insert(0, str(HERE.parent))
    from sdlcflow.bench.machine import describe_machine

    runs: dict[str, list[dict[str, Any]]] = {"before": [], "after": []}
    load_at_start = os.getloadavg()
    for round_ in range(args.rounds):
        order = ("before", "after") if round_ % 2 == 0 else ("after", "before")
        for side in order:
            tree = args.before if side == "before" else args.after
            figures = run_child(tree.resolve(), args.repos)
            runs[side].append(figures)
            print(f"round {round_ + 1} {side:6s}: {figures['cpu_ms_per_grant']:.3f} ms CPU/grant")
    median = {
        side: statistics.median(r["cpu_ms_per_grant"] for r in rows) for side, rows in runs.items()
    }
    ratio = round(median["before"] / median["after"], 2)
    print(
        f"median CPU per grant: before {median['before']:.3f} ms, after {median['after']:.3f} ms; "
        f"before/after {ratio}"
    )
    report = {
        "benchmark": "engine_ab",
        "started_at": time.time(),
        "machine": describe_machine(),
        "load_average_at_start": load_at_start,
        "load_average_at_end": os.getloadavg(),
        "trees": {"before": str(args.before), "after": str(args.after)},
        "repos": args.repos,
        "rounds": runs,
        "median_cpu_ms_per_grant": median,
        "cpu_per_grant_before_over_after": ratio,
        "engine_grants_per_cpu_s": {side: round(1000 / m, 1) for side, m in median.items()},
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
