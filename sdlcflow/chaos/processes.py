"""The run's child processes (coordinator, audit sink, agents) and the signals chaos sends them.

Each child runs `python -m sdlcflow.cli ...` in its own process group with its output in a log
file, so a kill reaches its children too and a failure can name the log to read. A child that
exits on its own (not killed by the run) is restarted and counted: the report shows it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

STOP_GRACE_S = 15.0


@dataclass
class Child:
    """One long-running `sdlcflow` subcommand that chaos may kill, pause and restart."""

    name: str
    args: tuple[str, ...]
    env: Mapping[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    unplanned_exits: list[int] = field(default_factory=list)

    def start(self) -> None:
        argv = (sys.executable, "-m", "sdlcflow.cli", *self.args)
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                argv,
                env=dict(self.env),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own group: signals reach its children too
            )
        self.starts += 1

    def _signal(self, sig: signal.Signals) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)

    def kill(self) -> None:
        """SIGKILL the whole group: no shutdown, no commit, no flush."""
        self._signal(signal.SIGKILL)
        if self.process is not None:
            self.process.wait(timeout=STOP_GRACE_S)
        self.process = None

    def pause(self) -> None:
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    def stop(self) -> int | None:
        """SIGTERM (SIGCONT first, in case it is paused), SIGKILL after a grace; the exit code."""
        if self.process is None:
            return None
        self._signal(signal.SIGTERM)
        self._signal(signal.SIGCONT)
        try:
            code = self.process.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            self._signal(signal.SIGKILL)
            code = self.process.wait(timeout=STOP_GRACE_S)
        self.process = None
        return code

    def restart_if_exited(self) -> bool:
        """Start it again when it exited by itself; True when it had."""
        if self.process is None or self.process.poll() is None:
            return False
        self.unplanned_exits.append(self.process.returncode)
        self.start()
        return True

    def tail(self, lines: int = 20) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log written)"
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class Children:
    """Every child of the run, stopped newest first on exit."""

    logs: Path
    env: Mapping[str, str]
    all: list[Child] = field(default_factory=list)

    def __enter__(self) -> Children:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop_all()

    def spawn(self, name: str, args: Sequence[str], env: Mapping[str, str] | None = None) -> Child:
        self.logs.mkdir(parents=True, exist_ok=True)
        child = Child(name, tuple(args), {**self.env, **(env or {})}, self.logs / f"{name}.log")
        child.start()
        self.all.append(child)
        return child

    def supervise(self) -> list[str]:
        """Restart children that exited by themselves; the names of those restarted."""
        return [child.name for child in self.all if child.restart_if_exited()]

    def stop_all(self) -> None:
        for child in reversed(self.all):
            child.stop()
