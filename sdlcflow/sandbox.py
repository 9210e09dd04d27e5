"""Run an agent's command where it cannot read the parent's secrets and cannot outlive its lease.

Every command gets a scrubbed environment (an allow-list, never a deny-list, so a new secret
variable cannot leak by being forgotten), a fresh HOME, a timeout, and a cancellation event the
agent SDK sets when the lease is lost: the whole process group is killed, not just the child.
Its stdout and stderr land in the artifact store, so the evidence of what ran is addressable.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from sdlcflow.artifacts import ArtifactStore
from sdlcflow.errors import SdlcflowError

#: Parent variables a command may see; everything else is dropped.
INHERITED_VARIABLES: tuple[str, ...] = ("PATH", "LANG")

#: Names a caller may not pass explicitly either: the agent's own credentials stay outside.
_FORBIDDEN_EXPLICIT = re.compile(r"^SDLCFLOW_")

_POLL_SECONDS = 0.02
_TERM_GRACE_SECONDS = 2.0


class SandboxError(SdlcflowError):
    """A command could not be started in the sandbox as asked."""


@dataclass(frozen=True)
class CommandResult:
    """What one sandboxed command did; output is kept in memory and in the artifact store."""

    argv: tuple[str, ...]
    exit_code: int
    duration_s: float
    timed_out: bool
    cancelled: bool
    stdout: bytes
    stderr: bytes
    stdout_digest: str
    stderr_digest: str

    @property
    def ok(self) -> bool:
        """True when the command ran to completion and exited 0."""
        return self.exit_code == 0 and not self.timed_out and not self.cancelled


def scrubbed_environment(
    home: Path, extra: Mapping[str, str] | None = None, parent: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment a sandboxed command sees: allow-listed parent variables, a private HOME,
    and only the extra variables the caller names explicitly."""
    source = os.environ if parent is None else parent
    env = {name: source[name] for name in INHERITED_VARIABLES if name in source}
    env.setdefault("PATH", os.defpath)
    env.setdefault("LANG", "C.UTF-8")
    tmp = home / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    env.update(
        HOME=str(home),
        TMPDIR=str(tmp),
        PYTHONDONTWRITEBYTECODE="1",  # keep checkouts byte-identical to the commit
        PYTHONHASHSEED="0",  # same inputs, same outputs
    )
    for name, value in (extra or {}).items():
        if _FORBIDDEN_EXPLICIT.match(name):
            raise SandboxError(
                f"refusing to pass {name} into a sandboxed command: sdlcflow credentials never "
                "enter the sandbox; give the command what it needs under another name"
            )
        env[name] = value
    return env


class Sandbox:
    """Runs commands with a scrubbed environment, a timeout and cancellation.

    Args:
        store: where stdout/stderr are kept as artifacts.
        scratch: directory under which each command gets a fresh HOME, removed after the run.
        default_timeout_s: timeout used when `run` is not given one.
    """

    def __init__(
        self, store: ArtifactStore, *, scratch: Path, default_timeout_s: float = 300.0
    ) -> None:
        if default_timeout_s <= 0:
            raise SandboxError(f"default_timeout_s must be positive, got {default_timeout_s}")
        self._store = store
        self._scratch = scratch
        self._default_timeout_s = default_timeout_s

    @property
    def store(self) -> ArtifactStore:
        return self._store

    def run(
        self,
        argv: Sequence[str],
        *,
        cwd: Path,
        timeout_s: float | None = None,
        extra_env: Mapping[str, str] | None = None,
        cancel: threading.Event | None = None,
    ) -> CommandResult:
        """Run `argv` in `cwd`; kill its process group on timeout or when `cancel` is set."""
        if not argv:
            raise SandboxError("cannot run an empty command; pass the program and its arguments")
        if not cwd.is_dir():
            raise SandboxError(f"working directory {cwd} does not exist; check out the tree first")
        self._scratch.mkdir(parents=True, exist_ok=True)
        limit = self._default_timeout_s if timeout_s is None else timeout_s
        with tempfile.TemporaryDirectory(prefix="home-", dir=self._scratch) as scratch_home:
            home = Path(scratch_home)
            env = scrubbed_environment(home, extra_env)
            with tempfile.TemporaryFile(dir=home) as out, tempfile.TemporaryFile(dir=home) as err:
                exit_code, duration, timed_out, cancelled = _supervise(
                    tuple(argv), cwd, env, out, err, limit, cancel
                )
                out.seek(0)
                err.seek(0)
                stdout, stderr = out.read(), err.read()
        return CommandResult(
            argv=tuple(argv),
            exit_code=exit_code,
            duration_s=duration,
            timed_out=timed_out,
            cancelled=cancelled,
            stdout=stdout,
            stderr=stderr,
            stdout_digest=self._store.put(stdout),
            stderr_digest=self._store.put(stderr),
        )

    async def run_async(
        self,
        argv: Sequence[str],
        *,
        cwd: Path,
        timeout_s: float | None = None,
        extra_env: Mapping[str, str] | None = None,
    ) -> CommandResult:
        """Like `run`, for asyncio callers: cancelling the awaiting task kills the command."""
        cancel = threading.Event()
        task = asyncio.ensure_future(
            asyncio.to_thread(
                self.run, argv, cwd=cwd, timeout_s=timeout_s, extra_env=extra_env, cancel=cancel
            )
        )
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            cancel.set()
            await asyncio.wait({task})  # the process group is gone before we re-raise
            raise


def _supervise(
    argv: tuple[str, ...],
    cwd: Path,
    env: dict[str, str],
    out: IO[bytes],
    err: IO[bytes],
    limit: float,
    cancel: threading.Event | None,
) -> tuple[int, float, bool, bool]:
    """Start the command in its own session and wait for exit, deadline or cancellation."""
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,  # own process group: we can kill every descendant
        )
    except OSError as exc:
        raise SandboxError(f"cannot start {argv[0]!r}: {exc}; check the program path") from exc
    deadline = started + limit
    timed_out = cancelled = False
    while True:
        try:
            proc.wait(timeout=_POLL_SECONDS)
            break
        except subprocess.TimeoutExpired:
            pass
        if cancel is not None and cancel.is_set():
            cancelled = True
        elif time.monotonic() >= deadline:
            timed_out = True
        if timed_out or cancelled:
            _kill_group(proc)
            break
    return proc.returncode, time.monotonic() - started, timed_out, cancelled


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the whole group, SIGKILL it after a grace period, and reap the leader."""
    _signal_group(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=_TERM_GRACE_SECONDS)
    _signal_group(proc.pid, signal.SIGKILL)  # descendants that ignored SIGTERM, or outlived it
    proc.wait()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)
