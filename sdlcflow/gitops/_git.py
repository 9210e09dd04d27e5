"""Running `git` with nothing borrowed from the machine: no global or system config, no prompts,
identity and dates given explicitly, so the same inputs make the same commits everywhere."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sdlcflow.errors import SdlcflowError

#: Settings every git call gets; the machine's own config is ignored (GIT_CONFIG_GLOBAL below).
_CONFIG: tuple[str, ...] = (
    "-c",
    "init.defaultBranch=main",
    "-c",
    "core.autocrlf=false",  # bytes in = bytes out: digests must not depend on the platform
    "-c",
    "core.quotePath=false",
    "-c",
    "advice.detachedHead=false",
    "-c",
    "gc.auto=0",  # no background gc racing our temp-dir cleanup
    "-c",
    "merge.conflictStyle=diff3",  # conflict hunks show the common ancestor too
    "-c",
    "protocol.file.allow=always",
)

DEFAULT_TIMEOUT_S = 120.0


class GitError(SdlcflowError):
    """A git command failed; the message carries the command and git's own explanation."""


class RefNotFound(GitError):
    """A branch, tag or SHA the caller named does not exist in the repository."""


@dataclass(frozen=True)
class GitIdentity:
    """Who a commit is attributed to (author and committer alike)."""

    name: str
    email: str


@dataclass(frozen=True)
class GitOutput:
    returncode: int
    stdout: bytes
    stderr: bytes

    @property
    def text(self) -> str:
        return self.stdout.decode("utf-8", "surrogateescape")


def git_environment(identity: GitIdentity | None = None, when: int | None = None) -> dict[str, str]:
    """The whole environment of a git call: PATH, a neutral locale, and explicit identity/time."""
    env = {
        "PATH": os.environ.get("PATH", os.defpath),
        "LANG": "C",
        "LC_ALL": "C",  # stable messages we can match on
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_TERMINAL_PROMPT": "0",
        "HOME": os.devnull,
    }
    if identity is not None:
        env.update(
            GIT_AUTHOR_NAME=identity.name,
            GIT_AUTHOR_EMAIL=identity.email,
            GIT_COMMITTER_NAME=identity.name,
            GIT_COMMITTER_EMAIL=identity.email,
        )
    if when is not None:
        stamp = f"@{when} +0000"
        env.update(GIT_AUTHOR_DATE=stamp, GIT_COMMITTER_DATE=stamp)
    return env


def git(
    args: Sequence[str],
    *,
    cwd: Path,
    identity: GitIdentity | None = None,
    when: int | None = None,
    stdin: bytes | None = None,
    check: bool = True,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> GitOutput:
    """Run `git <args>` in `cwd` (a work tree or a bare repository) and return its output."""
    argv = ["git", *_CONFIG, *args]
    try:
        done = subprocess.run(
            argv,
            cwd=cwd,
            env=git_environment(identity, when),
            input=stdin,
            capture_output=True,
            timeout=timeout_s,
            check=False,
        )
    except FileNotFoundError as exc:
        raise GitError("git is not installed or not on PATH; install git 2.38 or newer") from exc
    except subprocess.TimeoutExpired as exc:
        raise GitError(f"git {' '.join(args)} in {cwd} took longer than {timeout_s}s") from exc
    output = GitOutput(done.returncode, done.stdout, done.stderr)
    if check and done.returncode != 0:
        raise GitError(
            f"git {' '.join(args)} in {cwd} failed with exit code {done.returncode}: "
            f"{done.stderr.decode('utf-8', 'replace').strip()}"
        )
    return output
