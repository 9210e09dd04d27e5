"""From a policy package's raw Rego value to a PolicyResult, and from results to a decision.

Policy convention (sdlcflow/policies/README.md): `deny` and `review` are sets of messages
(strings, or objects `{"msg": ..., "rule": ..., "paths": [...]}`), `risk` is an optional
number 0-100 and `required_approvals` an optional count. Any other shape is an error, and an
error is REVIEW: a policy that cannot be read never passes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sdlcflow.policy.decision import (
    DEFAULT_RISK,
    BundleDecision,
    Finding,
    FindingKind,
    Outcome,
    PolicyResult,
    worst,
)
from sdlcflow.policy.modes import Mode, PolicyModes


@dataclass(frozen=True)
class RawResult:
    """What evaluating one policy produced: its package document, or an error message."""

    policy: str
    value: Mapping[str, Any] | None
    error: str | None = None


class _Malformed(Exception):
    pass


def interpret(raw: RawResult, mode: Mode, static_paths: Sequence[str]) -> PolicyResult:
    """Turn one raw evaluation into a verdict; malformed output or errors become REVIEW."""
    try:
        if raw.error is not None:
            raise _Malformed(raw.error)
        value = raw.value or {}
        findings = (
            *_findings(value.get("deny"), FindingKind.DENY, static_paths),
            *_findings(value.get("review"), FindingKind.REVIEW, static_paths),
        )
        risk = _number(value.get("risk"), "risk", 0, 100)
        approvals = _number(value.get("required_approvals"), "required_approvals", 0, 100)
    except _Malformed as exc:
        error = Finding(
            kind=FindingKind.ERROR,
            rule="evaluation",
            message=f"policy could not be evaluated, so it needs review: {exc}",
            input_paths=tuple(static_paths),
        )
        return _result(raw.policy, mode, Outcome.REVIEW, (error,), None, None)
    kinds = {f.kind for f in findings}
    outcome = (
        Outcome.FAIL
        if FindingKind.DENY in kinds
        else Outcome.REVIEW
        if FindingKind.REVIEW in kinds
        else Outcome.PASS
    )
    return _result(raw.policy, mode, outcome, findings, risk, approvals)


def _result(
    policy: str,
    mode: Mode,
    outcome: Outcome,
    findings: tuple[Finding, ...],
    risk: int | None,
    approvals: int | None,
) -> PolicyResult:
    required = max(1, approvals or 0) if outcome is Outcome.REVIEW else 0
    return PolicyResult(
        policy=policy,
        mode=mode,
        outcome=outcome,
        effective=outcome if mode is Mode.ENFORCE else Outcome.PASS,
        risk=DEFAULT_RISK[outcome] if risk is None else risk,
        required_approvals=required,
        findings=findings,
    )


def _findings(entries: Any, kind: FindingKind, static_paths: Sequence[str]) -> list[Finding]:
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise _Malformed(f"`{kind.value}` must be a set of messages, got {json.dumps(entries)}")
    found = [_finding(entry, kind, static_paths) for entry in entries]
    return sorted(found, key=lambda f: (f.rule, f.message))


def _finding(entry: Any, kind: FindingKind, static_paths: Sequence[str]) -> Finding:
    if isinstance(entry, str):
        return Finding(kind=kind, rule=kind.value, message=entry, input_paths=tuple(static_paths))
    if isinstance(entry, dict) and isinstance(entry.get("msg"), str):
        paths = entry.get("paths", static_paths)
        if not isinstance(paths, list | tuple) or not all(isinstance(p, str) for p in paths):
            raise _Malformed(f"`paths` of a {kind.value} entry must be a list of strings")
        rule = entry.get("rule", kind.value)
        return Finding(kind=kind, rule=str(rule), message=entry["msg"], input_paths=tuple(paths))
    raise _Malformed(
        f"a {kind.value} entry must be a string or an object with `msg`, got {json.dumps(entry)}"
    )


def _number(value: Any, name: str, low: int, high: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Malformed(f"`{name}` must be a number, got {json.dumps(value)}")
    return max(low, min(high, round(value)))


def decide(
    raws: Sequence[RawResult],
    modes: PolicyModes,
    static_paths: Mapping[str, Sequence[str]],
    *,
    bundle_digest: str,
    input_digest: str,
    cache_hit: bool,
) -> BundleDecision:
    """Apply modes to raw results and aggregate: worst outcome, highest risk, most approvals."""
    results = tuple(
        interpret(r, modes.mode_of(r.policy), static_paths.get(r.policy, ())) for r in raws
    )
    reviewing = [r.required_approvals for r in results if r.effective is Outcome.REVIEW]
    return BundleDecision(
        bundle_digest=bundle_digest,
        input_digest=input_digest,
        outcome=worst([r.effective for r in results]),
        enforced_outcome=worst([r.outcome for r in results]),
        risk=max((r.risk for r in results), default=0),
        required_approvals=max(reviewing, default=0),
        policies=results,
        cache_hit=cache_hit,
    )
