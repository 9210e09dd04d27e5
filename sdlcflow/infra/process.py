"""Detached server processes: launch, recognise, stop, and read their logs.

A server must outlive the `sdlcflow up` that started it, so it runs in its own session with
its output in a log file. A pid file alone is not proof (pids are reused): a process counts
as ours only if its command line carries the `-Dsdlcflow.home=` of that server's directory.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import psutil

_LOG_ROTATE_BYTES = 50 * 1024 * 1024
# keep handles of children we started so they are reaped (no zombies) and no ResourceWarning
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def home_marker(home: Path) -> str:
    """The JVM flag that ties a process to one server directory."""
    return f"-Dsdlcflow.home={home}"


def port_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    """Whether something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def port_owner(port: int) -> str:
    """A short description of the process listening on `port`, for error messages."""
    try:
        connections = psutil.net_connections(kind="tcp")
    except (psutil.AccessDenied, OSError):
        return "another process"
    for conn in connections:
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
            if conn.pid is None:
                return "another process"
            try:
                return f"pid {conn.pid} ({psutil.Process(conn.pid).name()})"
            except psutil.Error:
                return f"pid {conn.pid}"
    return "another process"


def launch(command: Sequence[str], *, env: Mapping[str, str], cwd: Path, log_path: Path) -> int:
    """Start `command` detached from our session, output appended to `log_path`; its pid."""
    _rotate(log_path)
    with log_path.open("ab") as log:
        child = subprocess.Popen(
            list(command),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # survives the CLI exiting and its terminal's signals
            close_fds=True,
        )
    _CHILDREN[child.pid] = child
    return child.pid


def _rotate(log_path: Path) -> None:
    if log_path.exists() and log_path.stat().st_size > _LOG_ROTATE_BYTES:
        log_path.replace(log_path.with_name(log_path.name + ".1"))


def read_pid(pid_path: Path) -> int | None:
    try:
        return int(pid_path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def is_our_server(pid: int | None, home: Path) -> bool:
    """Whether `pid` is alive (not a zombie) and is the server of directory `home`."""
    if pid is None:
        return False
    child = _CHILDREN.get(pid)
    if child is not None:
        # our own child: trust its Popen, since /proc/<pid>/cmdline can read empty for a
        # moment while the child is still inside exec
        if child.poll() is None:
            return home_marker(home) in list(child.args)  # type: ignore[arg-type]
        del _CHILDREN[pid]
        return False
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return home_marker(home) in process.cmdline()
    except psutil.Error:
        return False


def _reap(pid: int) -> None:
    child = _CHILDREN.get(pid)
    if child is not None and child.poll() is not None:
        del _CHILDREN[pid]


def terminate(pid: int, *, timeout_s: float, kill: bool = False) -> None:
    """Stop a process: SIGTERM (or SIGKILL at once when `kill`), SIGKILL after `timeout_s`."""
    with contextlib.suppress(psutil.NoSuchProcess):
        process = psutil.Process(pid)
        os.kill(pid, signal.SIGKILL if kill else signal.SIGTERM)
        try:
            process.wait(timeout=timeout_s)
        except psutil.TimeoutExpired:
            os.kill(pid, signal.SIGKILL)
            process.wait(timeout=timeout_s)
    with contextlib.suppress(ProcessLookupError, ChildProcessError):
        _reap(pid)


def log_tail(log_path: Path, lines: int = 30) -> str:
    """The last `lines` lines of a log, for error messages."""
    try:
        with log_path.open("rb") as log:
            log.seek(0, os.SEEK_END)
            log.seek(max(0, log.tell() - 64 * 1024))
            text = log.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return "(no log written)"
    return "\n".join(text.rstrip().splitlines()[-lines:])
