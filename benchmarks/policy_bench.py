"""Policy evaluation throughput and latency: naive vs optimised (compiled plan) vs cached.

Run: .venv/bin/python benchmarks/policy_bench.py [--seconds 3]
Prints a table and writes benchmarks/results/policy_bench.json with a machine description.
Inputs are realistic change documents for the shipped bundle (20 files, a few dependency,
env-var and test entries), each one distinct so the uncached paths never hit the cache.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sdlcflow.bench.machine import describe_machine
from sdlcflow.policy import _rego
from sdlcflow.policy.bundle import PolicyBundle
from sdlcflow.policy.cache import DecisionCache
from sdlcflow.policy.engine import PolicyEngine, evaluate_naive, input_bytes
from sdlcflow.policy.inputs import PolicyInput

ROOT = Path(__file__).resolve().parent.parent
BUNDLE = ROOT / "sdlcflow" / "policies"


def make_input(i: int) -> dict[str, Any]:
    head = f"{i:040x}"
    return PolicyInput.model_validate(
        {
            "repo": "acme/shop",
            "change_id": f"c-{i}",
            "change_kind": "dependency",
            "base_sha": "0" * 40,
            "head_sha": head,
            "lockfile_digest": f"sha256:{i:064x}",
            "files_changed": [{"path": f"src/module_{i}_{n}.py"} for n in range(18)]
            + [{"path": "src/auth/session.py"}, {"path": "requirements.txt"}],
            "dependency_changes": [
                {"name": "PyJWT", "from_version": "2.8.0", "to_version": "2.9.0"},
                {"name": "requests", "from_version": "2.31.0", "to_version": "2.32.0"},
            ],
            "env_var_changes": [
                {"name": "AUTH_SECRET", "change": "renamed", "new_name": "JWT_KEY"}
            ],
            "env_var_references": [{"name": "JWT_KEY", "path": "src/app.py", "line": 7}],
            "test_results": [
                {"suite": "unit", "status": "passed", "sha": head},
                {"suite": "integration", "status": "passed", "sha": head},
            ],
        }
    ).document()


def run(label: str, fn: Callable[[int], object], seconds: float) -> dict[str, Any]:
    for i in range(20):  # warm-up
        fn(i)
    latencies: list[float] = []
    start = time.perf_counter()
    i = 0
    while time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        fn(i)
        latencies.append(time.perf_counter() - t0)
        i += 1
    elapsed = time.perf_counter() - start
    latencies.sort()
    return {
        "approach": label,
        "evaluations": len(latencies),
        "evals_per_s": round(len(latencies) / elapsed, 1),
        "p50_ms": round(statistics.median(latencies) * 1e3, 4),
        "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1e3, 4),
    }


def profile_top(fn: Callable[[int], object], n: int = 300) -> str:
    profiler = cProfile.Profile()
    profiler.enable()
    for i in range(n):
        fn(i)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(6)
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0, help="time per approach")
    parser.add_argument("--inputs", type=int, default=5000, help="distinct inputs to cycle")
    parser.add_argument("--profile", action="store_true", help="print where the time goes")
    args = parser.parse_args()

    bundle = PolicyBundle.load(BUNDLE)
    inputs = [make_input(i) for i in range(args.inputs)]
    engine = PolicyEngine(bundle)
    cached_engine = PolicyEngine(bundle, cache=DecisionCache(max_entries=100))
    for i in range(50):
        cached_engine.evaluate(inputs[i])
    prepared = inputs

    def naive(i: int) -> object:
        return evaluate_naive(bundle, inputs[i % len(inputs)])

    def optimised(i: int) -> object:
        return engine.evaluate(inputs[i % len(inputs)])

    def rego_only(i: int) -> object:  # the compiled plan alone, no Python decision building
        return engine._evaluate_raw(prepared[i % len(prepared)])

    def cached(i: int) -> object:
        return cached_engine.evaluate(inputs[i % 50])

    assert naive(0) == optimised(0), "naive and optimised paths disagree"
    rows = [
        run("naive: fresh interpreter + per-policy queries", naive, args.seconds),
        run("optimised: compiled plan, one batched query", optimised, args.seconds),
        run("optimised, rego only (no digest, no decision)", rego_only, args.seconds),
        run("cached: same (bundle, input) digest", cached, args.seconds),
    ]
    print(f"{'approach':50} {'evals/s':>10} {'p50 ms':>9} {'p99 ms':>9}")
    for row in rows:
        print(
            f"{row['approach']:50} {row['evals_per_s']:>10} {row['p50_ms']:>9} {row['p99_ms']:>9}"
        )
    result = {
        "benchmark": "policy_bench",
        "policies": list(bundle.policies),
        "bundle_digest": bundle.digest,
        "input_bytes": len(input_bytes(inputs[0])),
        "regopy": _rego.regopy.__version__,
        "results": rows,
        "machine": describe_machine(),
    }
    if args.profile:
        print(profile_top(naive))
        print(profile_top(optimised))
    out = ROOT / "benchmarks" / "results" / "policy_bench.json"
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
