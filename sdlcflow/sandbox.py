"""Run an agent's command where it cannot read the parent's secrets and cannot outlive its lease.

Every command gets a scrubbed environment (an allow-list, never a deny-list, so a new secret
variable cannot leak by being forgotten), a fresh HOME, a timeout, and a cancellation event the
agent SDK sets when the lease is lost: the whole process group is killed, not just the child.
Its stdout and stderr land in the artifact store, so the evidence of what ran is addressable.

The file system is an allow-list too: the command runs under bubblewrap (`bwrap`) in its own
mount, PID, IPC and UTS namespaces with no capabilities, and sees only the system directories
(read-only), a few files of /etc, the Python it needs (read-only), its working directory, its
HOME and whatever the caller names writable. The agent's key file, its data directory, other
checkouts and the parent's /proc/<pid>/environ are simply not there.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from sdlcflow.artifacts import ArtifactStore
from sdlcflow.errors import SdlcflowError

#: Parent variables a command may see; everything else is dropped.
INHERITED_VARIABLES: tuple[str, ...] = ("PATH", "LANG")

#: Names a caller may not pass explicitly either: the agent's own credentials stay outside.
_FORBIDDEN_EXPLICIT = re.compile(r"^SDLCFLOW_")

#: System directories a command may read (missing ones are skipped; symlinks stay symlinks).
SYSTEM_DIRECTORIES: tuple[str, ...] = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64")

#: The files of /etc a command may read: name resolution, users, certificates, the loader.
#: Anything else there (shadow, ssh host keys, ssl/private, cloud and package credentials)
#: is absent.
ETC_ALLOWED: tuple[str, ...] = (
    "alternatives",
    "ca-certificates",
    "ca-certificates.conf",
    "gitconfig",
    "group",
    "host.conf",
    "hosts",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "mime.types",
    "nsswitch.conf",
    "os-release",
    "passwd",
    "protocols",
    "resolv.conf",
    "services",
    "ssl/certs",
)

BWRAP = "bwrap"

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
        isolate_filesystem: run under bubblewrap (the default); False keeps only the
            environment boundary, for platforms without it, and lets commands read every file
            the agent's user can read (its key included).
    """

    def __init__(
        self,
        store: ArtifactStore,
        *,
        scratch: Path,
        default_timeout_s: float = 300.0,
        isolate_filesystem: bool = True,
    ) -> None:
        if default_timeout_s <= 0:
            raise SandboxError(f"default_timeout_s must be positive, got {default_timeout_s}")
        self._store = store
        self._scratch = scratch
        self._default_timeout_s = default_timeout_s
        self._bwrap = find_bwrap() if isolate_filesystem else None

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
        writable: Sequence[Path] = (),
    ) -> CommandResult:
        """Run `argv` in `cwd`; kill its process group on timeout or when `cancel` is set.

        The command may write `cwd`, its HOME and the `writable` directories; it reads the
        system and Python directories; nothing else of the file system exists for it."""
        if not argv:
            raise SandboxError("cannot run an empty command; pass the program and its arguments")
        if not cwd.is_dir():
            raise SandboxError(f"working directory {cwd} does not exist; check out the tree first")
        self._scratch.mkdir(parents=True, exist_ok=True)
        limit = self._default_timeout_s if timeout_s is None else timeout_s
        with tempfile.TemporaryDirectory(prefix="home-", dir=self._scratch) as scratch_home:
            home = Path(scratch_home)
            env = scrubbed_environment(home, extra_env)
            command = tuple(argv)
            if self._bwrap is not None:
                command = (*isolation_args(self._bwrap, cwd, (home, *writable)), *command)
            with (
                tempfile.TemporaryFile(dir=self._scratch) as out,
                tempfile.TemporaryFile(dir=self._scratch) as err,
            ):
                exit_code, duration, timed_out, cancelled = _supervise(
                    command, cwd, env, out, err, limit, cancel
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
        writable: Sequence[Path] = (),
    ) -> CommandResult:
        """Like `run`, for asyncio callers: cancelling the awaiting task kills the command."""
        cancel = threading.Event()
        task = asyncio.ensure_future(
            asyncio.to_thread(
                self.run,
                argv,
                cwd=cwd,
                timeout_s=timeout_s,
                extra_env=extra_env,
                cancel=cancel,
                writable=writable,
            )
        )
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            cancel.set()
            await asyncio.wait({task})  # the process group is gone before we re-raise
            raise


def find_bwrap() -> str:
    """The bubblewrap executable, or a SandboxError saying how to install it."""
    found = shutil.which(BWRAP)
    if found is None:
        raise SandboxError(
            "bubblewrap (bwrap) is not installed, so commands cannot be kept away from the "
            "agent's key and files: install it (Debian/Ubuntu: apt-get install bubblewrap; "
            "`make sysdeps` does), or construct Sandbox(isolate_filesystem=False) knowingly"
        )
    return found


def python_roots() -> tuple[Path, ...]:
    """The directories this interpreter runs from (venv and base installation), read-only in
    the sandbox so commands can run `python -m <tool>` with the agent's own tools."""
    roots = {Path(p).resolve() for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    roots.add(Path(sys.executable).resolve().parent.parent)
    return tuple(sorted(roots))


def isolation_args(bwrap: str, cwd: Path, writable: Iterable[Path]) -> list[str]:
    """The bwrap command line that shows a command only what it needs (see module doc)."""
    args = [
        bwrap,
        "--die-with-parent",  # the sandbox never outlives the agent
        "--unshare-pid",  # no other process (nor its /proc/<pid>/environ) is visible
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--cap-drop",
        "ALL",  # even when the agent runs as root
    ]
    for directory in SYSTEM_DIRECTORIES:
        path = Path(directory)
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), directory]
        elif path.is_dir():
            args += ["--ro-bind", directory, directory]
    for name in ETC_ALLOWED:
        args += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    for root in python_roots():
        if not _under_system(root):
            args += ["--ro-bind", str(root), str(root)]
    for place in (cwd, *writable):
        resolved = str(place.resolve())
        args += ["--bind", resolved, resolved]
    args += ["--chdir", str(cwd.resolve()), "--"]
    return args


def _under_system(path: Path) -> bool:
    return any(path.is_relative_to(d) for d in SYSTEM_DIRECTORIES)


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
