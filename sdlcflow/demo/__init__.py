"""`sdlcflow demo`: the motivating incident, played for real and prevented, end to end.

Two agents change the login service at once (an auth-library bump and an env-var rename);
the coordinator detects the conflict, serialises them, re-verifies the later one on top of the
earlier; policy fails the half-done rename and sends the sensitive bump to humans; only the
fixed change, signed by two reviewers, reaches prod; a deploy that fails its smoke check rolls
back. Every step is checked against the coordinator's decisions log and the audit store.
"""

from sdlcflow.demo.errors import DemoError, MissingPiece, ServiceDied, StepFailed
from sdlcflow.demo.scenario import IncidentRun, ScenarioOptions, run_incident

__all__ = [
    "DemoError",
    "IncidentRun",
    "MissingPiece",
    "ScenarioOptions",
    "ServiceDied",
    "StepFailed",
    "run_incident",
]
