"""Backtest: replay recorded inputs against a new bundle before anyone switches it to enforce.

Each recorded decision is re-evaluated with the new bundle; the outcome enforce would give
(old vs new) classifies it as newly blocked, newly passed, changed (still blocked, but
differently) or unchanged, with the findings that appeared and disappeared as reasons.
Blocked means anything but PASS: FAIL stops the change, REVIEW stops it until humans approve.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from pydantic import ValidationError

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
    """Where recorded decisions come from: a JSONL file now, the audit store later."""

    def records(self, since_ms: int | None) -> Iterator[RecordedDecision]: ...


class JsonlInputSource:
    """One JSON object per line: `{"input": {...}, "decision": {...}, "recorded_at": ms}`."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def records(self, since_ms: int | None) -> Iterator[RecordedDecision]:
        with self.path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                record = self._parse(line, number)
                if since_ms is None or record.recorded_at >= since_ms:
                    yield record

    def _parse(self, line: str, number: int) -> RecordedDecision:
        try:
            row = json.loads(line)
            return RecordedDecision(
                input=PolicyInput.model_validate(row["input"]).document(),
                decision=BundleDecision.model_validate(row["decision"]),
                recorded_at=int(row.get("recorded_at", 0)),
            )
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, ValidationError) as exc:
            raise BacktestInputError(
                f"{self.path}:{number}: not a recorded decision ({exc}); each line needs "
                '{"input": {...}, "decision": {...}, "recorded_at": <ms>}'
            ) from None


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


_DURATION = re.compile(r"^(\d+)\s*([smhdw])$")
_UNIT_MS = {"s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


def parse_duration_ms(text: str) -> int:
    """`7d`, `12h`, `30m`, `45s`, `2w` -> milliseconds."""
    found = _DURATION.match(text.strip())
    if not found:
        raise BacktestInputError(
            f"duration {text!r} not understood; use a number and a unit: 30m, 12h, 7d, 2w"
        )
    return int(found.group(1)) * _UNIT_MS[found.group(2)]
