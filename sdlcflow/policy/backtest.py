"""Backtest: replay recorded inputs against a new bundle before anyone switches it to enforce.

Each recorded decision is re-evaluated with the new bundle; the outcome enforce would give
(old vs new) classifies it as newly blocked, newly passed, changed (still blocked, but
differently) or unchanged, with the findings that appeared and disappeared as reasons.
Blocked means anything but PASS: FAIL stops the change, REVIEW stops it until humans approve.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from pydantic import ValidationError

from sdlcflow.audit.model import AuditRow
from sdlcflow.errors import SdlcflowError
from sdlcflow.policy.decision import BundleDecision, Outcome
from sdlcflow.policy.engine import PolicyEngine
from sdlcflow.policy.inputs import PolicyInput
from sdlcflow.policy.modes import Mode, PolicyModes


class BacktestInputError(SdlcflowError):
    """A recorded input could not be read; the message names the file and line."""


@dataclass(frozen=True)
class RecordedDecision:
    """An input as it was evaluated, the decision it got then, and when (ms since epoch)."""

    input: dict[str, Any]
    decision: BundleDecision
    recorded_at: int = 0


class InputSource(Protocol):
    """Where recorded decisions come from: a JSONL file or the audit store."""

    def records(self, since_ms: int | None) -> Iterator[RecordedDecision]: ...


def parse_record(text: str, where: str) -> RecordedDecision:
    """One `{"input": {...}, "decision": {...}, "recorded_at": ms}` object; errors name `where`."""
    try:
        row = json.loads(text)
        return RecordedDecision(
            input=PolicyInput.model_validate(row["input"]).document(),
            decision=BundleDecision.model_validate(row["decision"]),
            recorded_at=int(row.get("recorded_at", 0)),
        )
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, ValidationError) as exc:
        raise BacktestInputError(
            f"{where}: not a recorded decision ({exc}); each record needs "
            '{"input": {...}, "decision": {...}, "recorded_at": <ms>}'
        ) from None


class JsonlInputSource:
    """One JSON object per line: `{"input": {...}, "decision": {...}, "recorded_at": ms}`."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def records(self, since_ms: int | None) -> Iterator[RecordedDecision]:
        with self.path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                record = parse_record(line, f"{self.path}:{number}")
                if since_ms is None or record.recorded_at >= since_ms:
                    yield record


class AuditRows(Protocol):
    """The slice of `sdlcflow.audit.queries.AuditReader` the audit source reads."""

    def by_repo(self, repo: str, since_ms: int, until_ms: int) -> list[AuditRow]: ...

    def by_policy(self, policy: str, since_ms: int, until_ms: int) -> list[AuditRow]: ...

    def by_id(self, event_id: str) -> AuditRow | None: ...


# every policy decision is filed under this policy name in `policy_decisions_by_policy_day`
ALL_POLICIES = "*"


class AuditInputSource:
    """Past policy results from the audit store whose outcome kept its evaluation (input
    document + decision), optionally of some repositories.

    Named repositories are read from their own day partitions (`events_by_repo_day`); otherwise
    the day's policy decisions (`policy_decisions_by_policy_day`, policy `*`) lead to the policy
    results that caused them. Neither scans every result of every repository.

    Args:
        rows: the audit reader.
        until_ms: end of the window (exclusive), normally now.
        repos: repositories to keep (exact names, or glob patterns); empty keeps all.
    """

    def __init__(self, rows: AuditRows, until_ms: int, repos: Sequence[str] = ()) -> None:
        self.rows = rows
        self.until_ms = until_ms
        self.repos = tuple(repos)
        self.skipped = 0  # policy results recorded without their evaluation (older agents)

    def records(self, since_ms: int | None) -> Iterator[RecordedDecision]:
        if since_ms is None:
            raise BacktestInputError(
                "reading the audit store needs a window: pass --since (e.g. 7d or an ISO time)"
            )
        for row in self._results(since_ms):
            record = self._record(row)
            if record is not None:
                yield record

    def _results(self, since_ms: int) -> Iterator[AuditRow]:
        """The stored TaskSucceeded rows of policy steps in the window."""
        if self.repos and not any(_is_glob(p) for p in self.repos):
            for repo in dict.fromkeys(self.repos):
                for row in self.rows.by_repo(repo, since_ms, self.until_ms):
                    if row.event_type == "TaskSucceeded":
                        yield row
            return
        seen: set[str] = set()
        for decision in self.rows.by_policy(ALL_POLICIES, since_ms, self.until_ms):
            cause = decision.causation_id
            if decision.event_type != "PolicyEvaluated" or not cause or cause in seen:
                continue
            seen.add(cause)
            if not self._wanted(decision.repo):
                continue
            result = self.rows.by_id(cause)
            if result is not None and result.event_type == "TaskSucceeded":
                yield result

    def _wanted(self, repo: str) -> bool:
        return not self.repos or any(fnmatch.fnmatchcase(repo, p) for p in self.repos)

    def _record(self, row: AuditRow) -> RecordedDecision | None:
        if not self._wanted(row.repo):
            return None
        policy = json.loads(row.json).get("payload", {}).get("policy")
        if not isinstance(policy, dict):
            return None  # a lint, test or other non-policy result
        evaluation = policy.get("evaluation") or ""
        if not evaluation:
            self.skipped += 1
            return None
        record = parse_record(evaluation, f"audit event {row.event_id}")
        return replace(record, recorded_at=row.occurred_at)


def _is_glob(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")


class Change(StrEnum):
    NEWLY_BLOCKED = "newly_blocked"
    NEWLY_PASSED = "newly_passed"
    CHANGED = "changed"
    UNCHANGED = "unchanged"


@dataclass(frozen=True)
class BacktestEntry:
    """One recorded input's old and new enforce-mode outcome and why they differ."""

    input_digest: str
    change_id: str
    old: Outcome
    new: Outcome
    change: Change
    added: tuple[str, ...]
    removed: tuple[str, ...]


@dataclass(frozen=True)
class BacktestReport:
    old_bundles: tuple[str, ...]
    new_bundle: str
    entries: tuple[BacktestEntry, ...]

    def count(self, change: Change) -> int:
        return sum(1 for e in self.entries if e.change is change)

    def summary(self) -> dict[str, int]:
        return {c.value: self.count(c) for c in Change}


def backtest(records: Iterable[RecordedDecision], engine: PolicyEngine) -> BacktestReport:
    """Evaluate every recorded input with `engine`, all policies enforced, and compare."""
    enforce_all = PolicyModes(default=Mode.ENFORCE)
    entries = []
    old_bundles: dict[str, None] = {}
    for record in records:
        old_bundles[record.decision.bundle_digest] = None
        new = engine.evaluate(record.input, enforce_all)
        entries.append(_compare(record, new))
    return BacktestReport(tuple(old_bundles), engine.bundle.digest, tuple(entries))


def _compare(record: RecordedDecision, new: BundleDecision) -> BacktestEntry:
    old_outcome, new_outcome = record.decision.enforced_outcome, new.enforced_outcome
    old_reasons, new_reasons = set(record.decision.reasons()), set(new.reasons())
    return BacktestEntry(
        input_digest=new.input_digest,
        change_id=str(record.input.get("change_id", "")),
        old=old_outcome,
        new=new_outcome,
        change=_classify(old_outcome, new_outcome),
        added=tuple(sorted(new_reasons - old_reasons)),
        removed=tuple(sorted(old_reasons - new_reasons)),
    )


def _classify(old: Outcome, new: Outcome) -> Change:
    if old is new:
        return Change.UNCHANGED
    if old is Outcome.PASS:
        return Change.NEWLY_BLOCKED
    if new is Outcome.PASS:
        return Change.NEWLY_PASSED
    return Change.CHANGED


_DURATION = re.compile(r"^(\d+)\s*([smhdw])\Z")
_UNIT_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


def parse_since_ms(text: str, now_ms: int) -> int:
    """`--since`: a window back from now (`7d`, `12h`) or an ISO-8601 time (UTC if no zone)."""
    if _DURATION.match(text.strip()):
        return now_ms - parse_duration_ms(text)
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise BacktestInputError(
            f"--since {text!r} is neither a window (30m, 12h, 7d, 2w) nor an ISO time "
            "(2026-11-20 or 2026-11-20T08:00:00+00:00)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def parse_duration_ms(text: str) -> int:
    """`7d`, `12h`, `30m`, `45s`, `2w` -> milliseconds."""
    found = _DURATION.match(text.strip())
    if not found:
        raise BacktestInputError(
            f"duration {text!r} not understood; use a number and a unit: 30m, 12h, 7d, 2w"
        )
    return int(found.group(1)) * _UNIT_MS[found.group(2)]
