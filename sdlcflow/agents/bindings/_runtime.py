"""What every reference binding needs besides its work function: where the repository's
remote is, where artifacts and releases live, and a Workspace tied to the task's lease.

Remotes (the bare repository that stands in for a repo's origin), first match wins:
  1. SDLCFLOW_GIT_REMOTES, a JSON object {"acme/service": "/srv/git/acme/service.git", ...};
  2. SDLCFLOW_GIT_ROOT/<repo>.git (so `acme/service` is `$SDLCFLOW_GIT_ROOT/acme/service.git`).
Artifacts live in SDLCFLOW_DATA_DIR/artifacts (release logs too, under its `releases/`), and
the check results the policy step reads in SDLCFLOW_DATA_DIR/check-results.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sdlcflow.agents._context import TaskContext
from sdlcflow.agents._errors import TaskFailure
from sdlcflow.agents.reference import Workspace
from sdlcflow.artifacts import ArtifactStore
from sdlcflow.core.events import TaskContract
from sdlcflow.sandbox import Sandbox
from sdlcflow.settings import Settings

REMOTES_ENV = "SDLCFLOW_GIT_REMOTES"
ROOT_ENV = "SDLCFLOW_GIT_ROOT"
_SAFE_PART = re.compile(r"^[A-Za-z0-9._-]+\Z")


class BindingConfigError(TaskFailure):
    """The binding is not configured for this task (no remote, no environment); retrying the
    same configuration cannot help, so it is reported as a non-retryable failure."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)


def remote_for(repo: str, environ: Mapping[str, str] | None = None) -> Path:
    """The bare repository standing in for `repo`'s remote (see the module docstring)."""
    env = os.environ if environ is None else environ
    mapping = _remotes_mapping(env.get(REMOTES_ENV, ""))
    if repo in mapping:
        return Path(mapping[repo])
    root = env.get(ROOT_ENV, "").strip()
    if root:
        parts = repo.split("/")
        if not all(_SAFE_PART.match(part) and part not in (".", "..") for part in parts):
            raise BindingConfigError(f"repository name {repo!r} cannot name a path under {root}")
        candidate = Path(root).joinpath(*parts[:-1], parts[-1] + ".git")
        if candidate.is_dir():
            return candidate
        raise BindingConfigError(
            f"no bare repository for {repo!r} at {candidate}; create it there or map it in "
            f"{REMOTES_ENV}"
        )
    raise BindingConfigError(
        f"no git remote configured for {repo!r}: set {REMOTES_ENV} to a JSON object "
        f'{{"{repo}": "/path/to/{repo.rsplit("/", 1)[-1]}.git"}} or {ROOT_ENV} to a directory '
        "holding <repo>.git"
    )


def _remotes_mapping(raw: str) -> dict[str, str]:
    if not raw.strip():
        return {}
    try:
        value: Any = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise BindingConfigError(f"{REMOTES_ENV} is not valid JSON ({exc})") from exc
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise BindingConfigError(f'{REMOTES_ENV} must map repo names to paths: {{"a/b": "/p"}}')
    return value


def data_dir() -> Path:
    """SDLCFLOW_DATA_DIR (default ~/.local/state/sdlcflow), as the rest of sdlcflow reads it."""
    return Settings.from_env().data_dir


def artifact_store() -> ArtifactStore:
    """The shared content-addressed store every binding writes its outputs into."""
    return ArtifactStore(data_dir() / "artifacts")


def workspace_for(ctx: TaskContext) -> Workspace:
    """A Workspace in the task's own directory whose cancel event is the lease-loss signal."""
    scratch = ctx.workdir / "scratch"
    scratch.mkdir(parents=True, exist_ok=True)
    store = artifact_store()
    timeout_s = max(1.0, ctx.contract.timeout_ms / 1000)
    sandbox = Sandbox(store, scratch=scratch / "sandbox", default_timeout_s=timeout_s)
    return Workspace(scratch=scratch, store=store, sandbox=sandbox, cancel=ctx.lost.event)


def required_input(ctx: TaskContext, name: str) -> str:
    """The leased input `name` (base/head); a contract without it cannot be worked on."""
    value = ctx.lease.input(name)
    if not value:
        raise BindingConfigError(
            f"task {ctx.task_id} was leased without a {name!r} input; the planner must give "
            f"every {ctx.contract.capability} task base and head SHAs"
        )
    return value


def environments_of(contract: TaskContract) -> tuple[str, ...]:
    """The environments the contract declares it deploys to (after `$change` expansion)."""
    if not contract.outputs.environments:
        raise BindingConfigError(
            f"task {contract.id} declares no environments; a {contract.capability} step needs "
            "`outputs: {environments: [...]}` in its template or environments on the change"
        )
    return contract.outputs.environments


def _results_dir(repo: str, sha: str) -> Path:
    return data_dir() / "check-results" / repo.replace("/", "__") / sha


def record_check(repo: str, sha: str, step: str, record: Mapping[str, Any]) -> None:
    """Keep a check's outcome for `sha` where the policy step of the same change finds it.

    Written atomically and keyed by step, so a repeated run overwrites with the same content.
    """
    folder = _results_dir(repo, sha)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{step}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(dict(record), sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, folder / f"{step}.json")


def check_results(repo: str, sha: str) -> tuple[dict[str, Any], ...]:
    """Every check outcome recorded for `sha`, in step order."""
    folder = _results_dir(repo, sha)
    if not folder.is_dir():
        return ()
    return tuple(
        json.loads(path.read_text(encoding="utf-8")) for path in sorted(folder.glob("*.json"))
    )
