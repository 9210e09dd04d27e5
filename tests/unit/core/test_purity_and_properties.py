"""The core stays pure, and planning and conditions behave for any input Hypothesis can find."""

from __future__ import annotations

import ast
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

import sdlcflow.core
from sdlcflow.core.codec import canonical_json
from sdlcflow.core.events import ArtifactRef, ChangeFacts
from sdlcflow.core.expr import ExpressionError, compile_condition
from sdlcflow.core.planner import TemplateError, parse_template, plan

FORBIDDEN = {
    "time",
    "datetime",
    "random",
    "secrets",
    "os",
    "socket",
    "asyncio",
    "faust",
    "confluent_kafka",
    "aiokafka",
    "cassandra",
    "rocksdict",
}


class TestCoreIsPure:
    """No clock, randomness, network or storage is imported by sdlcflow.core."""

    def test_no_forbidden_imports(self) -> None:
        folder = Path(sdlcflow.core.__file__).parent
        found = []
        for source in sorted(folder.glob("*.py")):
            for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
                names: list[str] = []
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module:
                    names = [node.module]
                found += [f"{source.name}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
        assert found == []


@st.composite
def dags(draw: st.DrawFn) -> str:
    """A random acyclic template: each step may need any earlier one."""
    count = draw(st.integers(1, 8))
    lines = ["name: random", "steps:"]
    for index in range(count):
        needs = draw(st.lists(st.integers(0, max(index - 1, 0)), max_size=3, unique=True))
        needs_ids = [f"s{n}" for n in needs if n < index]
        capability = draw(st.sampled_from(["lint", "test", "policy", "merge"]))
        lines.append(f"  - {{id: s{index}, capability: {capability}, needs: {needs_ids}}}")
    order = draw(st.permutations(lines[2:]))
    return "\n".join([*lines[:2], *order]) + "\n"


FACTS = ChangeFacts("code", ("a.py",), (), (), ())
INPUTS = (ArtifactRef("head", "h"),)


class TestPlannerProperties:
    """Any acyclic template plans deterministically in an order that respects `needs`."""

    @settings(max_examples=80, deadline=None)
    @given(dags())
    def test_plan_is_deterministic_and_topological(self, text: str) -> None:
        template = parse_template(text, "random.yaml")
        first = plan(template, "c", FACTS, INPUTS)
        assert canonical_json(first) == canonical_json(
            plan(parse_template(text, "random.yaml"), "c", FACTS, INPUTS)
        )
        seen: set[str] = set()
        for contract in first:
            assert set(contract.needs) <= seen
            seen.add(contract.id)

    @settings(max_examples=80, deadline=None)
    @given(st.integers(2, 6))
    def test_any_cycle_is_refused(self, size: int) -> None:
        lines = ["name: cyclic", "steps:"]
        for index in range(size):
            lines.append(f"  - {{id: s{index}, capability: lint, needs: [s{(index + 1) % size}]}}")
        try:
            parse_template("\n".join(lines) + "\n", "cyclic.yaml")
        except TemplateError as error:
            assert "dependency cycle" in str(error)
        else:
            raise AssertionError("a cyclic template was accepted")


class TestConditionProperties:
    """Arbitrary text either compiles to a total function or is refused; it never runs code."""

    @settings(max_examples=300, deadline=None)
    @given(st.text(alphabet="abcdefgkinlpstv_ .()[]\"=!<>'0123456789", max_size=40))
    def test_arbitrary_text_compiles_or_is_refused(self, text: str) -> None:
        try:
            condition = compile_condition(text)
        except ExpressionError:
            return
        context = {"kind": "code", "paths": ("a",), "labels": (), "steps": {}}
        condition(context)  # compiled conditions never raise on any context
