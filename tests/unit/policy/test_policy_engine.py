"""Policy engine: bundle loading, fail-safe evaluation, modes, cache, shipped policies, backtest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sdlcflow.policy.backtest import Change, JsonlInputSource, backtest, parse_duration_ms
from sdlcflow.policy.bundle import PolicyBundle, PolicyLoadError
from sdlcflow.policy.cache import DecisionCache
from sdlcflow.policy.commands import SHIPPED_BUNDLE
from sdlcflow.policy.decision import FindingKind, Outcome
from sdlcflow.policy.engine import PolicyEngine, evaluate_naive
from sdlcflow.policy.inputs import PolicyInput
from sdlcflow.policy.modes import Mode, ModeChange, PolicyModes
from sdlcflow.policy.regotest import TestStatus, run_tests_isolated

HEAD = "a" * 40


def change(**fields: Any) -> PolicyInput:
    base: dict[str, Any] = {
        "repo": "acme/shop",
        "change_id": "c-1",
        "base_sha": "b" * 40,
        "head_sha": HEAD,
        "test_results": [{"suite": "unit", "status": "passed", "sha": HEAD}],
    }
    return PolicyInput.model_validate(base | fields)


@pytest.fixture(scope="module")
def shipped() -> PolicyEngine:
    return PolicyEngine.load(SHIPPED_BUNDLE)


def rules(engine: PolicyEngine, document: PolicyInput, policy: str) -> set[str]:
    result = next(p for p in engine.evaluate(document).policies if p.policy == policy)
    return {f.rule for f in result.findings}


class TestShippedPolicies:
    """The shipped bundle catches each ingredient of the motivating incident."""

    def test_clean_change_with_green_tests_on_head_passes(self, shipped: PolicyEngine) -> None:
        decision = shipped.evaluate(change(files_changed=[{"path": "src/shop/cart.py"}]))
        assert decision.outcome is Outcome.PASS
        assert decision.required_approvals == 0

    def test_auth_library_bump_needs_review(self, shipped: PolicyEngine) -> None:
        doc = change(
            dependency_changes=[{"name": "PyJWT", "from_version": "2.8", "to_version": "2.9"}]
        )
        assert rules(shipped, doc, "sensitive_dependencies") == {"sensitive_dependency_changed"}
        assert shipped.evaluate(doc).outcome is Outcome.REVIEW

    def test_renamed_env_var_still_referenced_fails(self, shipped: PolicyEngine) -> None:
        doc = change(
            env_var_changes=[{"name": "AUTH_SECRET", "change": "renamed", "new_name": "JWT_KEY"}],
            env_var_references=[{"name": "AUTH_SECRET", "path": "deploy/prod.env", "line": 4}],
        )
        decision = shipped.evaluate(doc)
        assert decision.outcome is Outcome.FAIL
        assert any("deploy/prod.env:4" in reason for reason in decision.reasons())

    def test_migration_without_rollback_fails_and_with_rollback_needs_review(
        self, shipped: PolicyEngine
    ) -> None:
        bare = change(migrations=[{"id": "7", "path": "db/7.sql"}])
        safe = change(migrations=[{"id": "7", "path": "db/7.sql", "has_rollback": True}])
        assert shipped.evaluate(bare).outcome is Outcome.FAIL
        assert shipped.evaluate(safe).outcome is Outcome.REVIEW

    def test_auth_path_change_needs_two_approvals(self, shipped: PolicyEngine) -> None:
        decision = shipped.evaluate(change(files_changed=[{"path": "src/auth/session.py"}]))
        assert decision.outcome is Outcome.REVIEW
        assert decision.required_approvals == 2

    def test_green_tests_on_another_sha_fail(self, shipped: PolicyEngine) -> None:
        doc = change(test_results=[{"suite": "unit", "status": "passed", "sha": "c" * 40}])
        assert rules(shipped, doc, "tests_on_head") == {"tests_on_other_sha"}

    def test_rego_tests_of_shipped_bundle_pass(self) -> None:
        results = run_tests_isolated(SHIPPED_BUNDLE)
        assert results and all(r.status is TestStatus.PASSED for r in results), results


def bundle_of(**sources: str) -> PolicyBundle:
    return PolicyBundle.from_files({k: v.encode() for k, v in sources.items()})


GOOD = 'package sdlcflow.policies.good\nimport rego.v1\ndeny contains "bad" if input.bad\n'


class TestBundleLoading:
    """Malformed bundles are refused at load with file:line; the digest tracks content."""

    def test_syntax_error_is_reported_with_file_line_column(self) -> None:
        with pytest.raises(PolicyLoadError, match=r"broken\.rego:4:16: Invalid boolean operator"):
            bundle_of(**{"broken.rego": "package x\nimport rego.v1\n\nd if { input.x == }\n"})

    def test_unknown_function_is_refused_at_load(self) -> None:
        source = (
            "package sdlcflow.policies.f\nimport rego.v1\ndeny contains x if { x := nope(1) }\n"
        )
        with pytest.raises(PolicyLoadError, match="Function not found: nope"):
            bundle_of(**{"f.rego": source})

    def test_with_whole_input_is_refused_with_the_workaround(self) -> None:
        test = "package t_test\nimport rego.v1\ntest_a if { data.x with input as {} }\n"
        with pytest.raises(PolicyLoadError, match=r"t_test\.rego:3: .*with input\.head_sha"):
            bundle_of(**{"good.rego": GOOD, "t_test.rego": test})

    def test_bundle_without_policy_package_is_refused(self) -> None:
        with pytest.raises(PolicyLoadError, match="no policy module"):
            bundle_of(**{"x.rego": "package other\n"})

    def test_digest_changes_with_any_byte_and_not_with_load_order(self) -> None:
        one = bundle_of(**{"good.rego": GOOD, "data.json": "{}"})
        two = PolicyBundle.from_files({"data.json": b"{}", "good.rego": GOOD.encode()})
        three = bundle_of(**{"good.rego": GOOD + "\n", "data.json": "{}"})
        assert one.digest == two.digest != three.digest


ERRORS = """package sdlcflow.policies.conflict
import rego.v1
risk := 10 if input.a
risk := 20 if input.b
"""


class TestFailSafe:
    """A policy that errors or returns junk yields REVIEW with the error, never PASS."""

    def test_evaluation_error_is_review_with_error_evidence_others_unaffected(self) -> None:
        engine = PolicyEngine(bundle_of(**{"c.rego": ERRORS, "good.rego": GOOD}))
        decision = engine.evaluate({"a": True, "b": True, "bad": True})
        by_name = {p.policy: p for p in decision.policies}
        assert by_name["conflict"].outcome is Outcome.REVIEW
        assert by_name["conflict"].findings[0].kind is FindingKind.ERROR
        assert "multiple outputs" in by_name["conflict"].findings[0].message
        assert by_name["good"].outcome is Outcome.FAIL

    def test_builtin_type_error_is_review_not_silent_pass(self) -> None:
        source = (
            "package sdlcflow.policies.t\nimport rego.v1\n"
            'deny contains m if { m := sprintf("%d", input.x) }\n'
        )
        decision = PolicyEngine(bundle_of(**{"t.rego": source})).evaluate({"x": 3})
        assert decision.outcome is Outcome.REVIEW

    def test_malformed_deny_entry_is_review(self) -> None:
        source = "package sdlcflow.policies.m\nimport rego.v1\ndeny contains 42 if input.x\n"
        decision = PolicyEngine(bundle_of(**{"m.rego": source})).evaluate({"x": True})
        assert decision.outcome is Outcome.REVIEW
        assert "string or an object" in decision.reasons()[0]


class TestModes:
    """Audit mode records what enforce would do but lets the change through."""

    def test_audit_policy_records_fail_but_effective_pass(self) -> None:
        engine = PolicyEngine(bundle_of(**{"good.rego": GOOD}))
        modes = PolicyModes().with_change(
            ModeChange(policy="good", mode=Mode.AUDIT, actor="ops-ann", at_ms=1, reason="rollout")
        )
        decision = engine.evaluate({"bad": True}, modes)
        assert (decision.outcome, decision.enforced_outcome) == (Outcome.PASS, Outcome.FAIL)

    def test_last_change_wins_and_history_is_kept(self) -> None:
        modes = PolicyModes.from_changes(
            [
                ModeChange("good", Mode.AUDIT, "ann", 1, "trial"),
                ModeChange("*", Mode.ENFORCE, "bob", 2, "all on"),
            ]
        )
        assert modes.mode_of("good") is Mode.ENFORCE
        assert [c.actor for c in modes.history("good")] == ["ann", "bob"]


class TestCacheAndEquivalence:
    """Same (bundle, input) hits the cache; optimised and naive paths agree."""

    def test_second_evaluation_is_a_recorded_cache_hit(self) -> None:
        engine = PolicyEngine(bundle_of(**{"good.rego": GOOD}), cache=DecisionCache())
        first, second = engine.evaluate({"bad": True}), engine.evaluate({"bad": True})
        assert (first.cache_hit, second.cache_hit) == (False, True)
        assert first.model_copy(update={"cache_hit": True}) == second

    def test_modes_apply_on_cache_hits(self) -> None:
        engine = PolicyEngine(bundle_of(**{"good.rego": GOOD}), cache=DecisionCache())
        engine.evaluate({"bad": True})
        audit = PolicyModes(default=Mode.AUDIT)
        assert engine.evaluate({"bad": True}, audit).outcome is Outcome.PASS

    def test_errors_are_not_cached(self) -> None:
        cache = DecisionCache()
        engine = PolicyEngine(bundle_of(**{"c.rego": ERRORS}), cache=cache)
        engine.evaluate({"a": True, "b": True})
        assert len(cache) == 0

    def test_naive_and_optimised_decisions_are_equal(self, shipped: PolicyEngine) -> None:
        doc = change(
            files_changed=[{"path": "src/auth/x.py"}],
            migrations=[{"id": "1", "path": "db/1.sql"}],
        )
        assert evaluate_naive(shipped.bundle, doc) == shipped.evaluate(doc)


class TestBacktest:
    """Backtest reports which recorded inputs a new bundle would newly block or pass."""

    def test_new_rule_newly_blocks_and_removed_rule_newly_passes(self, tmp_path: Path) -> None:
        head = "package sdlcflow.policies.p\nimport rego.v1\n"
        old = PolicyEngine(
            bundle_of(**{"p.rego": head + 'deny contains "bad" if input.extra.bad\n'})
        )
        new = PolicyEngine(
            bundle_of(**{"p.rego": head + 'review contains "x" if input.extra.look\n'})
        )
        docs = [change(extra=extra) for extra in ({"bad": True}, {"look": True}, {})]
        lines = [
            json.dumps({"input": d.document(), "decision": old.evaluate(d).model_dump(mode="json")})
            for d in docs
        ]
        path = tmp_path / "recorded.jsonl"
        path.write_text("\n".join(lines) + "\n")
        report = backtest(JsonlInputSource(path).records(None), new)
        blocked = next(e for e in report.entries if e.change is Change.NEWLY_BLOCKED)
        assert blocked.added == ("p: x",)
        assert report.summary() == {
            "newly_blocked": 1,
            "newly_passed": 1,
            "changed": 0,
            "unchanged": 1,
        }

    def test_duration_parsing(self) -> None:
        assert parse_duration_ms("7d") == 7 * 86_400_000
        assert parse_duration_ms("30m") == 1_800_000
