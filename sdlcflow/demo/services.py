"""The processes the demo starts (coordinator, audit sink, agents) and their clean shutdown.

Each runs in its own process group with its output in a log file under the run directory, so
a failure message can name the log to read and Ctrl-C stops every child, grandchildren too.
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
from types import TracebackType

from sdlcflow.demo.errors import ServiceDied

STOP_GRACE_S = 10.0
LOG_TAIL_LINES = 15


@dataclass
class Service:
    """One started process and where its output goes."""

    name: str
    argv: tuple[str, ...]
    log: Path
    process: subprocess.Popen[bytes]

    def tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log written)"
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class Services:
    """Starts `sdlcflow` subcommands as children; `stop_all` ends them (also on Ctrl-C)."""

    logs: Path
    base_env: Mapping[str, str]
    started: list[Service] = field(default_factory=list)

    def __enter__(self) -> Services:
        self.logs.mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.stop_all()

    def start_cli(
        self, name: str, args: Sequence[str], env: Mapping[str, str] | None = None
    ) -> Service:
        """Run `python -m sdlcflow.cli ARGS` as service `name` with extra `env`."""
        argv = (sys.executable, "-m", "sdlcflow.cli", *args)
        log = self.logs / f"{name}.log"
        with log.open("ab") as out:
            process = subprocess.Popen(
                argv,
                env={**os.environ, **self.base_env, **(env or {})},
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own group: we stop it and its children together
            )
        service = Service(name, argv, log, process)
        self.started.append(service)
        return service

    def check(self) -> None:
        """Raise ServiceDied if any service exited; the message quotes its log."""
        for service in self.started:
            code = service.process.poll()
            if code is not None:
                raise ServiceDied(
                    f"{service.name} exited with code {code}; read {service.log}. Last lines:\n"
                    f"{service.tail()}"
                )

    def stop_all(self) -> None:
        """SIGTERM every group, wait, then SIGKILL what is left; newest first."""
        for service in reversed(self.started):
            _signal_group(service.process, signal.SIGTERM)
        for service in reversed(self.started):
            try:
                service.process.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                _signal_group(service.process, signal.SIGKILL)
                service.process.wait(timeout=STOP_GRACE_S)
        self.started.clear()


def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)  # the group id is the child's pid (start_new_session)
