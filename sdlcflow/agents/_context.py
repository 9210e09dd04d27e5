"""The running task's context, read through a contextvar like Temporal's `activity.info()`.

The worker (or the test harness) sets it before calling the handler; sync handlers run in a
thread that inherits it (`asyncio.to_thread` copies context). Outside a task every accessor
fails with a message saying so, instead of returning something half-filled.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdlcflow.agents._errors import LeaseLostError, NotInTaskError
from sdlcflow.core.events import ArtifactRef, ChangeFacts, TaskContract


@dataclass(frozen=True)
class LeaseInfo:
    """The lease the handler works under: results must carry this id, epoch and these inputs."""

    lease_id: str
    epoch: int
    expires_at: int
    attempt: int
    inputs: tuple[ArtifactRef, ...]

    def input(self, name: str) -> str:
        """The SHA/digest of the named input (`base`, `head`, `lockfile`); '' when absent."""
        return next((ref.sha for ref in self.inputs if ref.name == name), "")


class LeaseSignal:
    """Thread-safe 'the lease is gone' flag with its reason; the sandbox watches `event`."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.reason = ""
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._lock = threading.Lock()

    def set(self, reason: str) -> None:
        with self._lock:
            if self.event.is_set():
                return
            self.reason = reason
            self.event.set()
            waiters, self._waiters = self._waiters, []
        for loop, future in waiters:
            loop.call_soon_threadsafe(_resolve, future)

    def is_set(self) -> bool:
        return self.event.is_set()

    async def wait(self) -> None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if self.event.is_set():
                return
            self._waiters.append((loop, future))
        await future


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


Heartbeater = Callable[[tuple[Any, ...]], None]


class Workdir:
    """A task's working directory, made on first use: a handler that never touches it costs
    no filesystem work (a mkdir and rmdir per task were a third of a no-op agent's time)."""

    def __init__(self, root: Path | None, prefix: str, *, given: Path | None = None) -> None:
        self._root = root
        self._prefix = prefix
        self._path = given
        self._owned = given is None
        self._lock = threading.Lock()  # sync handlers run in worker threads

    @classmethod
    def at(cls, path: Path) -> Workdir:
        """An existing directory the caller owns (never removed here)."""
        return cls(None, "", given=path)

    @property
    def path(self) -> Path:
        with self._lock:
            if self._path is None:
                if self._root is not None:
                    self._root.mkdir(parents=True, exist_ok=True)
                self._path = Path(tempfile.mkdtemp(prefix=self._prefix, dir=self._root))
            return self._path

    @property
    def made(self) -> bool:
        """Was a directory made (so there is something to remove)?"""
        return self._owned and self._path is not None

    def remove(self) -> None:
        """Delete the directory if this object made it."""
        if self.made and self._path is not None:
            shutil.rmtree(self._path, ignore_errors=True)


@dataclass
class TaskContext:
    """Everything a handler may need besides its contract, for one leased task.

    `workdir` is a fresh directory for this task only (made on first use, deleted afterwards);
    `logger` carries trace, task and change ids on every record; `lost` is set the moment the
    lease is gone;
    `change` holds the change's kind, labels, paths, resources and environments as offered
    (None from a coordinator that did not send them yet); `policy_modes` the policy modes ops
    set for the repository (policy -> enforced) as offered.
    """

    contract: TaskContract
    repo: str
    change_id: str
    trace_id: str
    lease: LeaseInfo
    scratch: Workdir
    logger: logging.LoggerAdapter[logging.Logger]
    lost: LeaseSignal = field(default_factory=LeaseSignal)
    heartbeater: Heartbeater | None = None
    change: ChangeFacts | None = None
    policy_modes: Mapping[str, bool] = field(default_factory=dict)

    @property
    def task_id(self) -> str:
        return self.contract.id

    @property
    def workdir(self) -> Path:
        """This task's own directory (made on first access)."""
        return self.scratch.path

    @property
    def lease_lost(self) -> bool:
        return self.lost.is_set()

    def heartbeat(self, *details: Any) -> None:
        """Tell the worker the handler is alive; heartbeats are also sent automatically."""
        if self.heartbeater is not None:
            self.heartbeater(details)

    def ensure_live(self) -> None:
        """Raise LeaseLostError if the lease is gone: call it before every write that matters."""
        if self.lost.is_set():
            raise LeaseLostError(self.lost.reason)

    async def wait_lease_lost(self) -> None:
        """Return when the lease is lost (for handlers that race their work against it)."""
        await self.lost.wait()


_current: ContextVar[TaskContext | None] = ContextVar("sdlcflow_agent_task", default=None)


def context() -> TaskContext:
    """The context of the task the calling handler runs; fails clearly outside one."""
    current = _current.get()
    if current is None:
        raise NotInTaskError(
            "no task is running here: context(), heartbeat(), lease_lost() and ensure_live() "
            "work only inside an @agent handler run by a Worker or AgentEnvironment"
        )
    return current


def in_task() -> bool:
    """True inside a handler (never raises)."""
    return _current.get() is not None


def heartbeat(*details: Any) -> None:
    """Report progress for the running task (the worker heartbeats on its own as well)."""
    context().heartbeat(*details)


def lease_lost() -> bool:
    """True once the running task's lease is gone; stop writing when it is."""
    return context().lease_lost


def ensure_live() -> None:
    """Raise LeaseLostError when the running task's lease is gone."""
    context().ensure_live()


@contextmanager
def bound(ctx: TaskContext) -> Iterator[TaskContext]:
    """Make `ctx` the current task context for the enclosed code."""
    token = _current.set(ctx)
    try:
        yield ctx
    finally:
        _current.reset(token)


def task_logger(
    base: logging.Logger, *, trace_id: str, task_id: str, change_id: str, lease_id: str
) -> logging.LoggerAdapter[logging.Logger]:
    """A logger whose records carry the ids an operator greps for."""
    return logging.LoggerAdapter(
        base,
        {"trace_id": trace_id, "task_id": task_id, "change_id": change_id, "lease_id": lease_id},
    )
