"""Policy evaluation latency is recorded per decision, apart for cache hits and misses."""

from __future__ import annotations

from sdlcflow.observability.metrics import REGISTRY
from sdlcflow.policy.bundle import PolicyBundle
from sdlcflow.policy.cache import DecisionCache
from sdlcflow.policy.engine import PolicyEngine

DENY_BAD = 'package sdlcflow.policies.good\nimport rego.v1\ndeny contains "bad" if input.bad\n'


def _count(cache: str, outcome: str) -> float:
    labels = {"cache": cache, "outcome": outcome}
    return REGISTRY.get_sample_value("sdlcflow_policy_evaluation_seconds_count", labels) or 0.0


class TestPolicyTiming:
    """Each evaluate() observes one duration under its cache use and outcome."""

    def test_misses_and_hits_are_timed_by_outcome(self) -> None:
        bundle = PolicyBundle.from_files({"good.rego": DENY_BAD.encode()})
        engine = PolicyEngine(bundle, cache=DecisionCache())
        misses, hits = _count("miss", "FAIL"), _count("hit", "FAIL")
        engine.evaluate({"bad": True})
        engine.evaluate({"bad": True})
        assert (_count("miss", "FAIL"), _count("hit", "FAIL")) == (misses + 1, hits + 1)
