"""Time windows for analyst queries: `--since 24h` and the partition buckets it spans. Pure."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

from sdlcflow.errors import SdlcflowError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*\Z")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


class WindowError(SdlcflowError):
    """A --since/--until value that is neither a duration nor a date."""


def parse_duration_ms(text: str) -> int:
    """`90s`, `15m`, `24h`, `7d`, `2w` -> milliseconds."""
    match = _DURATION.match(text)
    if match is None:
        raise WindowError(
            f"{text!r} is not a duration; write a number and a unit (ms, s, m, h, d, w), e.g. 24h"
        )
    return int(float(match.group(1)) * _UNIT_MS[match.group(2)])


def parse_instant(text: str, now_ms: int) -> int:
    """A point in time: a duration ago (`24h`), or an ISO date/time (UTC unless it says)."""
    if _DURATION.match(text):
        return now_ms - parse_duration_ms(text)
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise WindowError(
            f"{text!r} is neither a duration (24h, 7d) nor an ISO date/time "
            "(2025-01-31 or 2025-01-31T12:00:00Z)"
        ) from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def days(since_ms: int, until_ms: int) -> list[date]:
    """Every UTC day that overlaps [since, until)."""
    first = _dt(since_ms).date()
    last = _dt(max(since_ms, until_ms - 1)).date()
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def hours(since_ms: int, until_ms: int) -> list[datetime]:
    """The start (naive UTC) of every hour that overlaps [since, until)."""
    start = since_ms // 3_600_000
    stop = max(since_ms, until_ms - 1) // 3_600_000
    return [_dt(h * 3_600_000).replace(tzinfo=None) for h in range(start, stop + 1)]


def months(since_ms: int, until_ms: int) -> list[str]:
    """Every UTC month (YYYY-MM) that overlaps [since, until)."""
    first, last = _dt(since_ms), _dt(max(since_ms, until_ms - 1))
    out: list[str] = []
    year, month = first.year, first.month
    while (year, month) <= (last.year, last.month):
        out.append(f"{year:04d}-{month:02d}")
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return out


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)
