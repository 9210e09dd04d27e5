"""The deploy agent: build the artifact of one SHA, store it, and release it to an environment.

The artifact is a deterministic tarball, so rebuilding a SHA reproduces its digest and a
promotion can insist on the exact artifact the checks verified (`expected_artifact`). The smoke
check runs from the staged slot in the sandbox, with the environment's config file
(`deploy/<env>.env` in the tree) as its only variables; a failing check leaves the previous
release active.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from sdlcflow.agents.reference._workspace import AgentWorkError, Workspace, python_executable
from sdlcflow.artifacts import DeployOutcome, ReleaseAction, Releases, SmokeOutcome
from sdlcflow.gitops import resolve, tree_archive

PYTHON = "{python}"  # placeholder in smoke commands for this venv's interpreter


class ArtifactMismatch(AgentWorkError):
    """The build of a SHA is not the artifact the caller verified."""


@dataclass(frozen=True)
class DeployInput:
    remote: Path
    sha: str
    env: str
    by: str
    at: int  # ms since the epoch, supplied by the caller (no clock reads here)
    why: str = ""
    smoke_command: tuple[str, ...] = (PYTHON, "-m", "service.smoke")
    env_file: str | None = "deploy/{env}.env"
    expected_artifact: str | None = None
    smoke_timeout_s: float = 60.0


@dataclass(frozen=True)
class DeployResult:
    env: str
    sha: str
    artifact: str
    release_seq: int
    action: ReleaseAction
    live: bool  # the environment serves this build now
    active_artifact: str | None
    active_sha: str | None
    smoke_log: str | None
    changed: bool  # False when a previous run had already done (or refused) this deploy

    def outputs(self) -> dict[str, str]:
        return {
            "env": self.env,
            "sha": self.sha,
            "artifact": self.artifact,
            "release_seq": str(self.release_seq),
            "action": self.action.value,
            "live": str(self.live).lower(),
            "active_artifact": self.active_artifact or "",
        }


def build_artifact(remote: Path, sha: str, workspace: Workspace) -> str:
    """Store the deterministic tarball of `sha`'s tree and return its digest."""
    return workspace.store.put(tree_archive(remote, sha))


def deploy(
    request: DeployInput, workspace: Workspace, releases: Releases | None = None
) -> DeployResult:
    """Release `request.sha` to `request.env`: stage, smoke-check, flip or keep the previous."""
    sha = resolve(request.remote, request.sha)
    artifact = build_artifact(request.remote, sha, workspace)
    if request.expected_artifact is not None and request.expected_artifact != artifact:
        raise ArtifactMismatch(
            f"{sha} builds {artifact}, not the verified {request.expected_artifact}; promote "
            "only what the checks verified: re-run them on this SHA"
        )
    workspace.ensure_live()
    log = releases if releases is not None else Releases(workspace.store)
    outcome = log.deploy(
        request.env,
        artifact,
        sha,
        by=request.by,
        at=request.at,
        why=request.why,
        smoke=lambda slot: _smoke(request, workspace, slot),
    )
    return _result(request.env, sha, artifact, outcome)


def _smoke(request: DeployInput, workspace: Workspace, slot: Path) -> SmokeOutcome:
    argv = [python_executable() if part == PYTHON else part for part in request.smoke_command]
    env = _env_file(slot, request.env_file.format(env=request.env)) if request.env_file else {}
    ran = workspace.run(argv, cwd=slot, timeout_s=request.smoke_timeout_s, extra_env=env)
    log = (
        (
            f"$ {' '.join(request.smoke_command)}\nexit {ran.exit_code} timed_out {ran.timed_out}\n"
            "--- stdout\n"
        ).encode()
        + ran.stdout
        + b"--- stderr\n"
        + ran.stderr
    )
    return SmokeOutcome(passed=ran.ok, log=workspace.store.put(log))


def _env_file(slot: Path, relative: str) -> Mapping[str, str]:
    """KEY=VALUE lines of the environment's config file (missing file: no variables)."""
    path = slot / relative
    if not path.is_file():
        return {}
    variables = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.strip().partition("=")
        if sep and key and not key.startswith("#"):
            variables[key.strip()] = value.strip()
    return variables


def _result(env: str, sha: str, artifact: str, outcome: DeployOutcome) -> DeployResult:
    current = outcome.current
    return DeployResult(
        env=env,
        sha=sha,
        artifact=artifact,
        release_seq=outcome.record.seq,
        action=outcome.record.action,
        live=outcome.live,
        active_artifact=None if current is None else current.artifact,
        active_sha=None if current is None else current.source_sha,
        smoke_log=outcome.record.smoke_log,
        changed=outcome.changed,
    )
