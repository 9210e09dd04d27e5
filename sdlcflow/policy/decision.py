"""Decisions: what each policy found, what enforce would do, and what actually happens.

PASS < REVIEW < FAIL in severity. A policy's `outcome` is what it says in enforce mode; its
`effective` outcome is PASS in audit mode. The bundle's decision aggregates the worst of each.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from sdlcflow.core.events import PolicyDecision as Outcome
from sdlcflow.policy.modes import Mode

__all__ = ["BundleDecision", "Finding", "FindingKind", "Outcome", "PolicyResult", "worst"]

_SEVERITY = {Outcome.PASS: 0, Outcome.REVIEW: 1, Outcome.FAIL: 2}
DEFAULT_RISK = {Outcome.PASS: 0, Outcome.REVIEW: 50, Outcome.FAIL: 90}


def worst(outcomes: list[Outcome]) -> Outcome:
    return max(outcomes, key=_SEVERITY.__getitem__, default=Outcome.PASS)


class FindingKind(StrEnum):
    DENY = "deny"
    REVIEW = "review"
    ERROR = "error"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Finding(_Frozen):
    """One rule that fired (or the error that stopped evaluation) and what it looked at."""

    kind: FindingKind
    rule: str
    message: str
    input_paths: tuple[str, ...] = ()


class PolicyResult(_Frozen):
    """One policy's verdict on one input."""

    policy: str
    mode: Mode
    outcome: Outcome
    effective: Outcome
    risk: int
    required_approvals: int
    findings: tuple[Finding, ...] = ()

    @property
    def errored(self) -> bool:
        return any(f.kind is FindingKind.ERROR for f in self.findings)


class BundleDecision(_Frozen):
    """The gate's answer for one input under one bundle, with the evidence for it."""

    bundle_digest: str
    input_digest: str
    outcome: Outcome
    enforced_outcome: Outcome
    risk: int
    required_approvals: int
    policies: tuple[PolicyResult, ...]
    cache_hit: bool = False

    @property
    def findings(self) -> tuple[tuple[str, Finding], ...]:
        return tuple((p.policy, f) for p in self.policies for f in p.findings)

    def reasons(self) -> tuple[str, ...]:
        """One line per finding, `policy: message`, for events and tables."""
        return tuple(f"{policy}: {f.message}" for policy, f in self.findings)
