"""What every reference agent works with, so each work function stays a plain function of its
input: a scratch directory for checkouts, the artifact store for its outputs, the sandbox for
its commands, and the cancellation event the SDK sets when the lease is lost."""

from __future__ import annotations

import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sdlcflow.artifacts import ArtifactStore
from sdlcflow.errors import SdlcflowError
from sdlcflow.gitops import GitIdentity
from sdlcflow.sandbox import CommandResult, Sandbox


class AgentWorkError(SdlcflowError):
    """A reference agent could not do its work with the inputs it was given."""


class WorkCancelled(AgentWorkError):
    """The work was stopped (the lease was lost) before it wrote anything further."""


def agent_identity(capability: str) -> GitIdentity:
    """The git identity a reference agent of `capability` commits as."""
    return GitIdentity(f"sdlcflow {capability} agent", f"{capability}@agents.sdlcflow.invalid")


@dataclass(frozen=True)
class Workspace:
    """Scratch space, artifact store, sandbox and cancellation for one piece of work."""

    scratch: Path
    store: ArtifactStore
    sandbox: Sandbox
    cancel: threading.Event = field(default_factory=threading.Event)

    @classmethod
    def at(
        cls, root: Path, *, store: ArtifactStore | None = None, timeout_s: float = 300.0
    ) -> Workspace:
        """A workspace under `root` (scratch in `root/scratch`, store in `root/artifacts`)."""
        scratch = root / "scratch"
        scratch.mkdir(parents=True, exist_ok=True)
        artifacts = store if store is not None else ArtifactStore(root / "artifacts")
        sandbox = Sandbox(artifacts, scratch=scratch / "sandbox", default_timeout_s=timeout_s)
        return cls(scratch=scratch, store=artifacts, sandbox=sandbox)

    def ensure_live(self) -> None:
        """Raise WorkCancelled if the lease was lost; called before anything is published."""
        if self.cancel.is_set():
            raise WorkCancelled(
                "work cancelled (lease lost) before publishing; nothing was written"
            )

    def run(
        self,
        argv: Sequence[str],
        *,
        cwd: Path,
        timeout_s: float | None = None,
        extra_env: Mapping[str, str] | None = None,
        writable: Sequence[Path] = (),
    ) -> CommandResult:
        """Run a command in the sandbox (it may write `cwd` and `writable` only); a cancelled
        run raises WorkCancelled."""
        result = self.sandbox.run(
            argv,
            cwd=cwd,
            timeout_s=timeout_s,
            extra_env=extra_env,
            cancel=self.cancel,
            writable=writable,
        )
        if result.cancelled:
            raise WorkCancelled(f"{argv[0]} was stopped because the lease was lost")
        return result


def python_executable() -> str:
    """The interpreter of this venv: sandboxed tools run as `python -m <tool>` with it."""
    return sys.executable
