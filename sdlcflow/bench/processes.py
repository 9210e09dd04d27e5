"""The processes of a benchmark run: started in their own session, sampled for CPU and memory,
stopped by their own pid (never by name: the machine is shared)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from sdlcflow.errors import SdlcflowError

SAMPLE_S = 0.5


class ProcessFailed(SdlcflowError):
    """A process of the run exited while it was needed."""


@dataclass
class Usage:
    """CPU seconds and peak resident memory of one process (its children included)."""

    cpu_s: float = 0.0
    peak_rss_mb: float = 0.0
    _start_cpu: float | None = None

    def to_json(self, wall_s: float) -> dict[str, float]:
        return {
            "cpu_s": round(self.cpu_s, 2),
            "cpu_percent": round(100 * self.cpu_s / wall_s, 1) if wall_s > 0 else 0.0,
            "peak_rss_mb": round(self.peak_rss_mb, 1),
        }


@dataclass
class Managed:
    name: str
    process: subprocess.Popen[bytes]
    log: Path
    usage: Usage = field(default_factory=Usage)


def _cpu_and_rss(pid: int) -> tuple[float, float]:
    root = psutil.Process(pid)
    cpu = rss = 0.0
    for proc in [root, *root.children(recursive=True)]:
        try:
            times = proc.cpu_times()
            cpu += times.user + times.system + times.children_user + times.children_system
            rss += proc.memory_info().rss
        except psutil.Error:
            continue
    return cpu, rss / 2**20


class ProcessSet:
    """Starts named processes, samples them in a thread, and stops each by its pid."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.processes: dict[str, Managed] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample_loop, daemon=True)
        self._measuring = False
        self._lock = threading.Lock()
        self._thread.start()

    def start(
        self, name: str, argv: Sequence[str], env: Mapping[str, str] | None = None
    ) -> Managed:
        log = self.workdir / f"{name}.log"
        with log.open("ab") as out:
            process = subprocess.Popen(
                [sys.executable, *argv],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **(env or {})},
                start_new_session=True,
            )
        managed = Managed(name, process, log)
        with self._lock:
            self.processes[name] = managed
        return managed

    def check(self) -> None:
        """Raise with the log's tail when a process exited early."""
        for managed in list(self.processes.values()):
            if managed.process.poll() is not None:
                tail = managed.log.read_text(errors="replace")[-2500:]
                raise ProcessFailed(
                    f"{managed.name} exited with {managed.process.returncode}; log "
                    f"{managed.log}:\n{tail}"
                )

    def measure(self) -> None:
        """Start counting CPU from now (the warm-up is excluded); peaks count from now too."""
        with self._lock:
            for managed in self.processes.values():
                try:
                    cpu, _ = _cpu_and_rss(managed.process.pid)
                except psutil.Error:
                    continue
                managed.usage = Usage(_start_cpu=cpu)
            self._measuring = True

    def freeze(self) -> dict[str, Usage]:
        """Stop counting; the usage of every process over the measured window."""
        self._sample_once()
        with self._lock:
            self._measuring = False
            return {name: m.usage for name, m in self.processes.items()}

    def _sample_loop(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            self._sample_once()

    def _sample_once(self) -> None:
        with self._lock:
            if not self._measuring:
                return
            for managed in self.processes.values():
                try:
                    cpu, rss = _cpu_and_rss(managed.process.pid)
                except psutil.Error:
                    continue
                usage = managed.usage
                usage.cpu_s = cpu - (usage._start_cpu or 0.0)
                usage.peak_rss_mb = max(usage.peak_rss_mb, rss)

    def stop(self, name: str, timeout_s: float = 15.0) -> None:
        """SIGTERM the process group the process leads, SIGKILL after the timeout."""
        managed = self.processes.get(name)
        if managed is None or managed.process.poll() is not None:
            return
        os.killpg(managed.process.pid, signal.SIGTERM)
        try:
            managed.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(managed.process.pid, signal.SIGKILL)
            managed.process.wait(timeout=10)

    def close(self) -> None:
        for name in list(self.processes):
            self.stop(name)
        self._stop.set()
        self._thread.join(5)


def own_usage() -> tuple[float, float]:
    """CPU seconds and RSS (MiB) of this process alone (the load generator, not its children)."""
    me = psutil.Process()
    times = me.cpu_times()
    return times.user + times.system, me.memory_info().rss / 2**20
