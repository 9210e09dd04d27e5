"""Policy evaluations per second, uncached and cached, on the shipped bundle (sdlcflow.policy).

Measured in the suite's own process beside the load, so the figure shares the run's machine
load. Inputs are distinct change documents (uncached: every one misses) or a small set that
repeats (cached: keyed by bundle digest and input digest).
"""

from __future__ import annotations

import time
from importlib import resources
from pathlib import Path
from typing import Any

from sdlcflow.bench.stats import rate, summarize
from sdlcflow.policy.bundle import PolicyBundle
from sdlcflow.policy.cache import DecisionCache
from sdlcflow.policy.engine import PolicyEngine
from sdlcflow.policy.inputs import PolicyInput

REPEATED_INPUTS = 50


def change_document(index: int) -> Any:
    """A realistic policy input: 20 files, dependency and env-var changes, passing tests."""
    head = f"{index:040x}"
    return PolicyInput.model_validate(
        {
            "repo": "bench/policy",
            "change_id": f"c-{index}",
            "change_kind": "dependency",
            "base_sha": "0" * 40,
            "head_sha": head,
            "lockfile_digest": f"sha256:{index:064x}",
            "files_changed": [{"path": f"src/module_{index}_{n}.py"} for n in range(18)]
            + [{"path": "src/auth/session.py"}, {"path": "requirements.txt"}],
            "dependency_changes": [
                {"name": "PyJWT", "from_version": "2.8.0", "to_version": "2.9.0"},
            ],
            "env_var_changes": [{"name": "AUTH_SECRET", "change": "renamed", "new_name": "JWT"}],
            "env_var_references": [{"name": "JWT", "path": "src/app.py", "line": 7}],
            "test_results": [{"suite": "unit", "status": "passed", "sha": head}],
        }
    ).document()


def _timed(engine: PolicyEngine, documents: list[Any], seconds: float) -> dict[str, Any]:
    latencies: list[float] = []
    started = time.perf_counter()
    index = 0
    while time.perf_counter() - started < seconds:
        t0 = time.perf_counter()
        engine.evaluate(documents[index % len(documents)])
        latencies.append((time.perf_counter() - t0) * 1000)
        index += 1
    return {
        "evaluations": len(latencies),
        "per_s": round(rate(len(latencies), time.perf_counter() - started), 1),
        "latency_ms": summarize(latencies).to_json(3),
    }


def policy_rates(seconds: float, bundle_root: Path | None = None) -> dict[str, Any]:
    root = bundle_root or Path(str(resources.files("sdlcflow") / "policies"))
    bundle = PolicyBundle.load(root)
    distinct = [change_document(i) for i in range(int(seconds * 2000) + 100)]
    uncached = PolicyEngine(bundle)
    cached = PolicyEngine(bundle, cache=DecisionCache(max_entries=1000))
    repeated = distinct[:REPEATED_INPUTS]
    for document in repeated:
        cached.evaluate(document)
    return {
        "bundle_digest": bundle.digest,
        "uncached": _timed(uncached, distinct, seconds),
        "cached": _timed(cached, repeated, seconds),
    }
