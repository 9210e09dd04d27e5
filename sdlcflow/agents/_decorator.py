"""`@agent("lint")`: bind a typed function to a capability, checked when applied, returned as is.

Like a Temporal activity definition: the handler takes one dataclass (the TaskContract, so
fields can be added without breaking anyone) and returns a result dataclass; the definition
rides on the function as an attribute, so the function stays callable and testable as written.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sdlcflow.agents._errors import AgentDefinitionError
from sdlcflow.agents._result import ReportsTaskResult, TaskResult
from sdlcflow.core.events import TaskContract

F = TypeVar("F", bound=Callable[..., Any])
Compensation = Callable[[TaskContract, "LeaseLoss"], Awaitable[None] | None]

_ATTRIBUTE = "__sdlcflow_agent__"
_CAPABILITY = re.compile(r"^[a-z0-9][a-z0-9-]*\Z")


@dataclass(frozen=True)
class LeaseLoss:
    """Why a compensation hook runs: which lease, what ended it, what the coordinator asked."""

    lease_id: str
    epoch: int
    reason: str
    compensation: str | None  # the contract's (or the coordinator's) named compensation


@dataclass(frozen=True)
class AgentDefinition:
    """A checked agent: its capability, the handler and its optional compensation hook."""

    capability: str
    handler: Callable[..., Any]
    is_async: bool
    compensate: Compensation | None
    name: str

    @property
    def compensate_is_async(self) -> bool:
        return self.compensate is not None and inspect.iscoroutinefunction(self.compensate)


def agent(
    capability: str, *, compensate: Compensation | None = None, name: str | None = None
) -> Callable[[F], F]:
    """Mark `fn(task: TaskContract) -> Result` as the handler of `capability`'s tasks.

    Args:
        capability: the capability whose offers the handler takes (`sdlc.tasks.<capability>`).
        compensate: called with the contract and a LeaseLoss when the lease is lost mid-run or
            the coordinator asks for compensation; undoes what the handler may have written.
        name: a name for logs and metrics (default: the function's qualified name).
    """
    _check_capability(capability)
    if compensate is not None and not callable(compensate):
        raise AgentDefinitionError(f"compensate={compensate!r} is not callable; pass a function")

    def apply(fn: F) -> F:
        definition = AgentDefinition(
            capability=capability,
            handler=fn,
            is_async=_check_signature(fn),
            compensate=compensate,
            name=name or str(getattr(fn, "__qualname__", repr(fn))),
        )
        setattr(fn, _ATTRIBUTE, definition)
        return fn

    return apply


def definition_of(obj: object) -> AgentDefinition:
    """The AgentDefinition of a decorated function (or a definition itself)."""
    if isinstance(obj, AgentDefinition):
        return obj
    found = getattr(obj, _ATTRIBUTE, None)
    if not isinstance(found, AgentDefinition):
        raise AgentDefinitionError(
            f"{obj!r} is not an agent; decorate it with @agent('<capability>')"
        )
    return found


def _check_capability(capability: str) -> None:
    if not isinstance(capability, str) or not _CAPABILITY.match(capability):
        raise AgentDefinitionError(
            f"capability {capability!r} is not a valid name: use lower-case letters, digits "
            "and dashes, e.g. 'lint' or 'dependency-update'"
        )


def _check_signature(fn: Callable[..., Any]) -> bool:
    """Check the handler's shape now rather than on the first task; return whether it is async."""
    if not callable(fn):
        raise AgentDefinitionError(f"@agent needs a function, got {fn!r}")
    where = getattr(fn, "__qualname__", repr(fn))
    params = [
        p
        for p in inspect.signature(fn).parameters.values()
        if p.default is inspect.Parameter.empty
        and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    ]
    if len(params) != 1 or params[0].kind is inspect.Parameter.KEYWORD_ONLY:
        raise AgentDefinitionError(
            f"{where} must take exactly one positional parameter, the TaskContract; it takes "
            f"{len(params)} required ones. Read the rest from `context()`"
        )
    try:
        hints = typing.get_type_hints(fn)
    except (NameError, TypeError) as exc:
        raise AgentDefinitionError(f"{where}: cannot resolve its type hints ({exc})") from exc
    if hints.get(params[0].name) is not TaskContract:
        raise AgentDefinitionError(
            f"{where}: annotate parameter {params[0].name!r} as TaskContract "
            f"(got {hints.get(params[0].name)!r})"
        )
    if "return" not in hints:
        raise AgentDefinitionError(
            f"{where}: annotate the return type (TaskResult, a dataclass with task_result(), "
            "or None)"
        )
    _check_return(where, hints["return"], inspect.iscoroutinefunction(fn))
    return inspect.iscoroutinefunction(fn)


def _check_return(where: str, hint: Any, is_async: bool) -> None:
    if hint is None or hint is type(None) or hint is TaskResult:
        return
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        if issubclass(hint, TaskResult) or callable(getattr(hint, "task_result", None)):
            return
        raise AgentDefinitionError(
            f"{where} returns dataclass {hint.__name__} without a `task_result()` method; add "
            "`def task_result(self) -> TaskResult` so the SDK knows what it verified and touched"
        )
    raise AgentDefinitionError(
        f"{where} returns {hint!r}; return TaskResult, a dataclass implementing "
        f"{ReportsTaskResult.__name__}, or None" + (" (async handlers too)" if is_async else "")
    )
