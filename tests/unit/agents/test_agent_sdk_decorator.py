"""The @agent decorator checks handlers when applied and leaves them callable as written."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from sdlcflow.agents import (
    AgentDefinitionError,
    NotInTaskError,
    TaskContract,
    TaskResult,
    agent,
    context,
    definition_of,
    ensure_live,
    heartbeat,
    in_task,
    lease_lost,
    task_contract,
)


@dataclass(frozen=True)
class LintReport:
    findings: int

    def task_result(self) -> TaskResult:
        return TaskResult()


@dataclass(frozen=True)
class Bare:
    ok: bool


class TestAgentDecorator:
    """Applying @agent records a checked definition and returns the very same function."""

    def test_returns_the_function_unchanged_and_callable(self) -> None:
        def lint(task: TaskContract) -> LintReport:
            return LintReport(findings=len(task.inputs))

        decorated = agent("lint")(lint)
        assert decorated is lint
        assert decorated(task_contract("lint")) == LintReport(findings=3)
        definition = definition_of(lint)
        assert (definition.capability, definition.is_async) == ("lint", False)

    def test_records_async_handlers_as_async(self) -> None:
        @agent("test")
        async def run_tests(task: TaskContract) -> TaskResult:
            return TaskResult()

        assert definition_of(run_tests).is_async

    @pytest.mark.parametrize("capability", ["", "Lint", "lint agent", "-lint", "lint/x"])
    def test_rejects_capability_names_that_cannot_be_topic_suffixes(self, capability: str) -> None:
        with pytest.raises(AgentDefinitionError, match="lower-case letters"):
            agent(capability)

    def test_rejects_a_handler_with_two_required_parameters(self) -> None:
        def handler(task: TaskContract, extra: str) -> TaskResult:
            return TaskResult()

        with pytest.raises(AgentDefinitionError, match="exactly one positional parameter"):
            agent("lint")(handler)

    def test_rejects_a_parameter_that_is_not_the_contract(self) -> None:
        def handler(task: dict[str, str]) -> TaskResult:
            return TaskResult()

        with pytest.raises(AgentDefinitionError, match="annotate parameter 'task' as TaskContract"):
            agent("lint")(handler)

    def test_rejects_a_missing_return_annotation(self) -> None:
        def handler(task: TaskContract):  # type: ignore[no-untyped-def]
            return None

        with pytest.raises(AgentDefinitionError, match="annotate the return type"):
            agent("lint")(handler)

    def test_rejects_a_result_dataclass_that_cannot_say_what_it_verified(self) -> None:
        def handler(task: TaskContract) -> Bare:
            return Bare(True)

        with pytest.raises(AgentDefinitionError, match="task_result"):
            agent("lint")(handler)

    def test_definition_of_an_undecorated_function_names_the_fix(self) -> None:
        with pytest.raises(AgentDefinitionError, match=r"decorate it with @agent"):
            definition_of(print)


class TestContextOutsideATask:
    """Context accessors fail clearly when no task is running instead of returning junk."""

    @pytest.mark.parametrize("accessor", [context, heartbeat, lease_lost, ensure_live])
    def test_accessor_raises_not_in_task(self, accessor: object) -> None:
        assert callable(accessor)
        with pytest.raises(NotInTaskError, match="only inside an @agent handler"):
            accessor()

    def test_in_task_is_false_outside(self) -> None:
        assert in_task() is False
