"""What the agent SDK raises; every class is an SdlcflowError, so one `except` catches us."""

from __future__ import annotations

from sdlcflow.errors import SdlcflowError


class AgentError(SdlcflowError):
    """Base of the agent SDK's errors."""


class AgentDefinitionError(AgentError):
    """An `@agent` function or a Worker was set up in a way the SDK cannot run; says the fix."""


class NotInTaskError(AgentError):
    """`context()`, `heartbeat()` or `lease_lost()` was called outside a running task."""


class LeaseLostError(AgentError):
    """The lease is gone (revoked, expired, refused or the coordinator went silent): stop writing.

    Raised by `ensure_live()` inside a handler; the worker then runs the compensation hook and
    never publishes a result for the lost lease.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(f"lease lost: {reason}; stop writing, the compensation hook will run")
        self.reason = reason


class TaskFailure(AgentError):
    """Raise from a handler to report TaskFailed with a message; `retryable=False` for a verdict
    that another attempt cannot change (lint findings, failing tests)."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class IdentityError(AgentError):
    """The agent's credential or key is missing, unreadable, expired or does not fit its agents."""
