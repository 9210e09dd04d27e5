"""Structured logs: records bound to trace/change/task/agent ids, JSON on request, sampled.

    configure(LogFormat.JSON, level="info", success_sample_rate=0.1)
    with bind(trace_id=..., change_id=..., task_id=...):
        log.info("lease granted")          # carries the three ids

Ids are bound with contextvars, so each asyncio task and thread sees its own, and a
`LoggerAdapter`'s `extra` (the agent SDK's task logger) counts as bound too. Sampling keeps
every failure (WARNING and above, or any record with an exception) in full detail, and keeps
successes at `success_sample_rate`, decided per trace id, so a kept trace is kept whole.
"""

from __future__ import annotations

import contextvars
import logging
import random
import zlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from enum import StrEnum
from types import MappingProxyType
from typing import Any

import orjson

from sdlcflow.errors import SdlcflowError

BOUND_FIELDS = ("trace_id", "change_id", "task_id", "agent_id", "lease_id")
_FIELDS = frozenset(BOUND_FIELDS)
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s%(bound)s"

_NOTHING: Mapping[str, str] = MappingProxyType({})
_bound: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar(
    "sdlcflow_log_bound", default=_NOTHING
)
# attributes every LogRecord has: anything else on a record came from `extra=`
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "bound",
}


class LogFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


class LogConfigError(SdlcflowError):
    """A logging option that cannot work."""


@contextmanager
def bind(**ids: str | None) -> Iterator[None]:
    """Bind ids to every record logged inside the block (this task/thread only)."""
    if not _FIELDS.issuperset(ids):
        unknown = sorted(set(ids) - _FIELDS)
        raise LogConfigError(f"cannot bind {unknown}: bind one of {', '.join(BOUND_FIELDS)}")
    merged = {**_bound.get(), **{k: v for k, v in ids.items() if v}}
    token = _bound.set(merged)
    try:
        yield
    finally:
        _bound.reset(token)


class EventIds:
    """Binds one event's ids for a block, cheaply: the per-event path of a busy worker sets
    one contextvar to a tuple; nothing is merged until a record is actually logged."""

    __slots__ = ("_ids", "_token")

    def __init__(
        self, trace_id: str, change_id: str | None, task_id: str | None, agent_id: str | None
    ) -> None:
        self._ids = (trace_id, change_id, task_id, agent_id)

    def __enter__(self) -> None:
        self._token = _event_ids.set(self._ids)

    def __exit__(self, *_exc: object) -> None:
        _event_ids.reset(self._token)


_EVENT_FIELDS = ("trace_id", "change_id", "task_id", "agent_id")
_event_ids: contextvars.ContextVar[tuple[str | None, ...] | None] = contextvars.ContextVar(
    "sdlcflow_log_event_ids", default=None
)


def bound() -> Mapping[str, str]:
    """The ids bound in the current context (`bind` wins over `EventIds` on the same field)."""
    ids = _event_ids.get()
    if ids is None:
        return _bound.get()
    event = {name: value for name, value in zip(_EVENT_FIELDS, ids, strict=True) if value}
    return {**event, **_bound.get()}


def is_failure(record: logging.LogRecord) -> bool:
    """Failures are WARNING and above, and anything logged with an exception."""
    return record.levelno >= logging.WARNING or record.exc_info is not None


class BindFilter(logging.Filter):
    """Copies the bound ids onto each record (an `extra=` value of the same name wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in bound().items():
            if not hasattr(record, name):
                setattr(record, name, value)
        ids = [f"{name}={getattr(record, name)}" for name in BOUND_FIELDS if hasattr(record, name)]
        record.bound = (" " + " ".join(ids)) if ids else ""
        return True


class SamplingFilter(logging.Filter):
    """Keeps every failure; keeps a success when its trace falls in the sampled fraction.

    Args:
        rate: fraction of successes kept, 0.0 to 1.0.
        draw: a random number in [0, 1) for records without a trace id (tests pass their own).
    """

    def __init__(self, rate: float, draw: Any = random.random) -> None:
        super().__init__()
        if not 0.0 <= rate <= 1.0:
            raise LogConfigError(f"success sample rate {rate} is not between 0.0 and 1.0")
        self.rate = rate
        self._draw = draw

    def filter(self, record: logging.LogRecord) -> bool:
        if is_failure(record) or self.rate >= 1.0:
            return True
        trace_id = getattr(record, "trace_id", None) or bound().get("trace_id")
        if trace_id:
            return zlib.crc32(trace_id.encode()) / 2**32 < self.rate
        return bool(self._draw() < self.rate)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, bound ids, extras, exception."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "ts": record.created,
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in vars(record).items():
            if name not in _STANDARD and value is not None:
                document[name] = value
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            document["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(document, default=str).decode()


def handler(
    log_format: LogFormat = LogFormat.TEXT, *, success_sample_rate: float = 1.0
) -> logging.Handler:
    """A stderr handler with binding, sampling and the chosen format."""
    out = logging.StreamHandler()
    out.addFilter(BindFilter())
    out.addFilter(SamplingFilter(success_sample_rate))
    formatter = JsonFormatter() if log_format is LogFormat.JSON else logging.Formatter(TEXT_FORMAT)
    out.setFormatter(formatter)
    return out


def configure(
    log_format: LogFormat | str = LogFormat.TEXT,
    *,
    level: int | str = logging.INFO,
    success_sample_rate: float = 1.0,
) -> None:
    """Replace the root logger's handlers with one structured handler."""
    try:
        chosen = LogFormat(log_format)
    except ValueError:
        raise LogConfigError(
            f"log format {log_format!r} is not one of {', '.join(f.value for f in LogFormat)}"
        ) from None
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler(chosen, success_sample_rate=success_sample_rate))
    root.setLevel(level.upper() if isinstance(level, str) else level)


def dict_config(
    log_format: LogFormat | str, *, level: str = "INFO", success_sample_rate: float = 1.0
) -> dict[str, Any]:
    """The same set-up as `configure`, as a `logging.config.dictConfig` document (faust/mode
    workers take one and would otherwise install their own handlers)."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {
            "sdlcflow": {
                "()": f"{__name__}.handler",
                "log_format": LogFormat(log_format),
                "success_sample_rate": success_sample_rate,
            }
        },
        "root": {"level": level.upper(), "handlers": ["sdlcflow"]},
    }
