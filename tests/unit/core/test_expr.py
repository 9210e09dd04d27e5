"""The `when:` language evaluates safe conditions and refuses everything else."""

from __future__ import annotations

import pytest

from sdlcflow.core.expr import ExpressionError, compile_condition, evaluate, step_references

CONTEXT = {
    "kind": "dependency",
    "paths": ("requirements.lock", "src/auth.py"),
    "labels": ("major",),
    "resources": (),
    "environments": ("prod",),
    "steps": {"policy": {"status": "succeeded", "decision": "REVIEW"}},
}


class TestConditions:
    """Conditions read change facts and step outcomes."""

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ('steps.policy.decision == "REVIEW"', True),
            ('steps["policy"].decision != "REVIEW"', False),
            ('kind == "dependency" and "major" in labels', True),
            ('"minor" in labels or kind == "code"', False),
            ("not len(resources)", True),
            ('any_match(paths, "src/*.py")', True),
            ('all_match(paths, "src/*")', False),
            ("len(paths) >= 2", True),
            ("steps.lint.status == null", True),
            ('steps.lint.status > "a"', False),
            ('"prod" in environments', True),
            ("", True),
        ],
    )
    def test_condition_evaluates_against_change_facts(self, text: str, expected: bool) -> None:
        assert evaluate(text, CONTEXT) is expected

    def test_step_references_lists_steps_read(self) -> None:
        text = 'steps.policy.decision == "REVIEW" or steps["scan"].status == "skipped"'
        assert step_references(text) == ("policy", "scan")


class TestUnsafeExpressionsAreRefused:
    """Anything beyond comparisons, boolean logic, lookups and three functions is refused."""

    @pytest.mark.parametrize(
        ("text", "fragment"),
        [
            ("__import__('os').system('x')", "may be called"),
            ("kind.__class__()", "may be called"),
            ("lambda: 1", "Lambda is not allowed"),
            ("secrets == 1", "unknown name 'secrets'"),
            ("paths[kind]", "literal keys"),
            ("kind +", "cannot parse"),
            ("[x for x in paths]", "ListComp is not allowed"),
            ("len(paths, labels)", "takes 1 argument"),
            ("1 + 2", "BinOp is not allowed"),
        ],
    )
    def test_refused_with_a_message_naming_the_problem(self, text: str, fragment: str) -> None:
        with pytest.raises(ExpressionError) as info:
            compile_condition(text)
        assert fragment in str(info.value)

    def test_dunder_attributes_read_as_missing_not_as_python_attributes(self) -> None:
        assert evaluate("kind.__class__ == null", CONTEXT) is True
