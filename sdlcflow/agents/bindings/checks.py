"""The lint and test capabilities: run the reference checks on the exact head SHA leased.

A check that runs and finds problems is a verdict, not an accident: it is reported as a
non-retryable TaskFailed naming the stored report, so the change fails instead of retrying.
"""

from __future__ import annotations

from sdlcflow.agents._context import context
from sdlcflow.agents._decorator import agent
from sdlcflow.agents._errors import TaskFailure
from sdlcflow.agents._result import TaskResult
from sdlcflow.agents.bindings._runtime import (
    record_check,
    remote_for,
    required_input,
    workspace_for,
)
from sdlcflow.agents.reference import LintInput, SuiteInput, lint, run_suite
from sdlcflow.core.events import ArtifactRef, TaskContract


@agent("lint")
def lint_agent(task: TaskContract) -> TaskResult:
    """ruff on the leased head; the findings report is the task's artifact."""
    ctx = context()
    head = required_input(ctx, "head")
    result = lint(LintInput(remote_for(ctx.repo), head), workspace_for(ctx))
    ctx.ensure_live()
    if not result.passed:
        raise TaskFailure(
            f"lint found {result.findings} problem(s) at {head}; report {result.report}",
            retryable=False,
        )
    return TaskResult(artifacts=(ArtifactRef("lint-report", result.report),))


@agent("test")
def suite_agent(task: TaskContract) -> TaskResult:
    """pytest on the leased head; the JUnit XML is the artifact, the outcome is kept for policy."""
    ctx = context()
    head = required_input(ctx, "head")
    result = run_suite(SuiteInput(remote_for(ctx.repo), head), workspace_for(ctx))
    ctx.ensure_live()
    record_check(
        ctx.repo,
        result.sha,
        task.step,
        {
            "suite": task.step,
            "status": "passed" if result.passed else "failed",
            "sha": result.sha,
            "junit": result.junit,
            "tests": result.tests,
            "failures": result.failures,
            "errors": result.errors,
        },
    )
    if not result.passed:
        raise TaskFailure(
            f"tests failed at {head}: {result.failures} failure(s), {result.errors} error(s) of "
            f"{result.tests}; JUnit report {result.junit}",
            retryable=False,
        )
    return TaskResult(artifacts=(ArtifactRef("junit", result.junit),))
