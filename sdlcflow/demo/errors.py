"""What can go wrong in the demo, each saying which step, what was expected and where to look."""

from __future__ import annotations

from sdlcflow.errors import SdlcflowError


class DemoError(SdlcflowError):
    """The demo could not show what it narrates; the message names the step and the fix."""


class StepFailed(DemoError):
    """A step did not happen as narrated (an event did not arrive, or said something else)."""

    def __init__(self, step: str, message: str) -> None:
        super().__init__(f"step {step!r}: {message}")
        self.step = step


class MissingPiece(DemoError):
    """A part of sdlcflow the demo needs is not built (yet): named precisely, never faked."""


class ServiceDied(DemoError):
    """A process the demo started exited early; the message ends with its log's last lines."""
