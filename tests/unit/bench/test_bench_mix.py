"""The bench change mix: templates, step counts, retries, dead letters and reviews."""

from __future__ import annotations

from collections import Counter

import pytest

from sdlcflow.bench.mix import (
    FIRST_STEP,
    MAX_ATTEMPTS,
    TEMPLATE_STEPS,
    MixError,
    MixSpec,
    Outcome,
    expected_outcome,
    failing_attempts,
    planned_steps,
    says_review,
    should_fail,
    template_for,
    template_of_task,
)
from sdlcflow.core.planner import load_templates, packaged_template_texts

CHANGES = [f"change-{i}" for i in range(4000)]


class TestBenchTemplates:
    """The shipped bench templates have the step counts and DAG shapes the mix assumes."""

    def test_each_bench_template_plans_the_counted_steps_plus_an_optional_approval(self) -> None:
        templates = load_templates(packaged_template_texts())
        for name, checks in TEMPLATE_STEPS.items():
            steps = templates[name].steps
            assert len(steps) == checks + 1  # the approval runs only on REVIEW
            assert [s.id for s in steps if s.when] == ["approval"]

    def test_templates_span_three_to_twelve_steps_with_fan_out_and_fan_in(self) -> None:
        templates = load_templates(packaged_template_texts())
        sizes = {name: len(templates[name].steps) - 1 for name in TEMPLATE_STEPS}
        assert min(sizes.values()) == 3 and max(sizes.values()) + 1 == 12
        deep = {s.id: s for s in templates["bench-deep"].steps}
        assert len(deep["policy"].needs) == 7  # fan-in of seven checks
        fanned_from_build = [s for s in deep.values() if s.needs == ("build",)]
        assert len(fanned_from_build) == 5  # fan-out of five test shards

    def test_the_first_step_of_each_template_is_the_one_the_mix_dead_letters(self) -> None:
        templates = load_templates(packaged_template_texts())
        for name, step in FIRST_STEP.items():
            first = templates[name].steps[0]
            assert first.id == step and not first.needs
            assert first.max_attempts == MAX_ATTEMPTS


class TestMixDraws:
    """Draws are deterministic per change and follow the configured shares."""

    def test_the_same_change_always_gets_the_same_template_and_behaviour(self) -> None:
        spec = MixSpec()
        again = MixSpec()
        for change in CHANGES[:200]:
            assert template_for(spec, change) == template_for(again, change)
            assert says_review(spec, change) == says_review(again, change)

    def test_template_shares_follow_the_weights(self) -> None:
        spec = MixSpec()
        counts = Counter(template_for(spec, c) for c in CHANGES)
        for name, weight in spec.weights.items():
            assert counts[name] / len(CHANGES) == pytest.approx(weight, abs=0.03)

    def test_a_zero_weight_template_is_never_drawn(self) -> None:
        spec = MixSpec(weights={"bench-chain": 0.0, "bench-fan": 1.0})
        assert {template_for(spec, c) for c in CHANGES[:500]} == {"bench-fan"}

    def test_review_and_dead_letter_shares_follow_the_rates(self) -> None:
        spec = MixSpec(review_rate=0.2, dead_rate=0.05)
        reviews = sum(says_review(spec, c) for c in CHANGES) / len(CHANGES)
        dead = sum(expected_outcome(spec, c) is Outcome.FAILED for c in CHANGES) / len(CHANGES)
        assert reviews == pytest.approx(0.2, abs=0.025)
        assert dead == pytest.approx(0.05, abs=0.015)

    def test_planned_steps_are_the_template_steps_plus_one_on_review(self) -> None:
        spec = MixSpec(review_rate=0.5)
        for change in CHANGES[:300]:
            extra = 1 if says_review(spec, change) else 0
            assert planned_steps(spec, change) == TEMPLATE_STEPS[template_for(spec, change)] + extra
            assert 3 <= planned_steps(spec, change) <= 12


class TestFailures:
    """Checks fail once (a retry) or every attempt (a dead letter); gates never fail."""

    def test_a_dead_change_fails_every_attempt_of_its_first_step(self) -> None:
        spec = MixSpec(dead_rate=1.0)
        change = CHANGES[0]
        template = template_for(spec, change)
        step = FIRST_STEP[template]
        assert all(should_fail(spec, change, template, step, a) for a in (1, 2, 3))

    def test_a_retried_step_fails_its_first_attempt_only(self) -> None:
        spec = MixSpec(retry_rate=1.0, dead_rate=0.0)
        change = CHANGES[1]
        template = template_for(spec, change)
        step = FIRST_STEP[template]
        assert should_fail(spec, change, template, step, 1)
        assert not should_fail(spec, change, template, step, 2)

    def test_gates_and_decisions_never_fail(self) -> None:
        spec = MixSpec(retry_rate=1.0, dead_rate=1.0)
        for step in ("policy", "approval", "merge", "promote"):
            assert failing_attempts(spec, CHANGES[2], "bench-fan", step) == 0

    def test_task_ids_name_their_step(self) -> None:
        spec = MixSpec()
        assert template_of_task("c-1/test-3", "c-1", spec)[1] == "test-3"
        with pytest.raises(MixError, match="not a step of change"):
            template_of_task("c-2/test", "c-1", spec)


class TestMixSpec:
    """Bad mix parameters are refused with the valid range."""

    def test_unknown_templates_and_rates_out_of_range_are_refused(self) -> None:
        with pytest.raises(MixError, match="unknown bench templates"):
            MixSpec(weights={"code-change": 1.0}).checked()
        with pytest.raises(MixError, match=r"within 0\.\.1"):
            MixSpec(retry_rate=1.5).checked()
        with pytest.raises(MixError, match="not all be zero"):
            MixSpec(weights={"bench-fan": 0.0}).checked()
