"""Evidence bundles for approval tasks: assembled from real git, stored content-addressed.

A reviewer signs `EvidenceBundle.digest()` (sdlcflow.identity), so the bundle must hold
everything the decision rests on: the exact diff base..head, test results, an environment
snapshot (tool versions and env var *names*, never values), the policy evidence and risk
score, and the command that replays the checks locally against the same SHAs.

Whoever reports the policy step's outcome stores the bundle here and reports its digest as
`PolicyOutcome.evidence_digest`; the coordinator copies that digest into ApprovalRequested,
and the CLI and console fetch the bundle back by it.

Storage: the canonical JSON bytes go into the artifact store (named by their sha256), and a
small index file maps the evidence digest to that artifact. Both are checked on every read,
so a bundle that changed on disk is reported, never shown to a reviewer.
"""

from __future__ import annotations

import os
import platform
import re
import shlex
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from sdlcflow.artifacts import ArtifactNotFound, ArtifactStore
from sdlcflow.errors import SdlcflowError
from sdlcflow.gitops import diff as git_diff
from sdlcflow.identity import EvidenceBundle, StateRef, canonical_bytes
from sdlcflow.identity.canonical import to_plain

# Tools whose versions a reviewer wants to see next to the results (first line of --version).
DEFAULT_TOOLS: tuple[str, ...] = ("git", "python3")
DEFAULT_CHECKS: tuple[str, ...] = ("ruff check .", "python -m pytest -q")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}\Z")
_VERSION_TIMEOUT_S = 10


class EvidenceError(SdlcflowError):
    """An evidence bundle is missing, altered, or does not describe the state asked about."""


@dataclass(frozen=True)
class EvidenceRequest:
    """What to gather for one approval task; everything else comes from git and the host.

    Args:
        repo: the repository name as on the events (`acme/shop`).
        change_id: the change the approval belongs to.
        remote: a bare repository or checkout holding both SHAs.
        base: base SHA (or ref); head: head SHA (or ref) — resolved to full SHAs.
        lockfile_digest, artifact_digest: the rest of the verified state.
        test_results: one mapping per check (name, outcome, counts, artifact digests).
        policy_decision: the policy decision with its evidence (rules fired, messages).
        policy_bundle_digest: the digest of the policy bundle that decided.
        risk_score: 0-100.
        required_approvals: N of the N-of-M.
        checks: the commands that replay the checks inside a checkout.
        tools: executables whose versions go into the environment snapshot.
        environ: the environment whose variable names are recorded (default: os.environ).
    """

    repo: str
    change_id: str
    remote: Path
    base: str
    head: str
    lockfile_digest: str = ""
    artifact_digest: str = ""
    test_results: Sequence[Mapping[str, Any]] = ()
    policy_decision: Mapping[str, Any] = field(default_factory=dict)
    policy_bundle_digest: str = ""
    risk_score: int = 0
    required_approvals: int = 1
    checks: Sequence[str] = DEFAULT_CHECKS
    tools: Sequence[str] = DEFAULT_TOOLS
    environ: Mapping[str, str] | None = None


def tool_version(tool: str) -> str:
    """The first line `tool --version` prints, or why it could not be had."""
    try:
        done = subprocess.run(
            [tool, "--version"],
            capture_output=True,
            text=True,
            timeout=_VERSION_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unavailable ({type(exc).__name__})"
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0].strip() if lines else f"unknown (exit {done.returncode})"


def environment_snapshot(
    tools: Iterable[str] = DEFAULT_TOOLS, environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Tool versions, platform and the *names* of environment variables (values never leave)."""
    env = os.environ if environ is None else environ
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "tools": {tool: tool_version(tool) for tool in sorted(set(tools))},
        "env_var_names": sorted(env),
    }


def replay_command(remote: str, base: str, head: str, checks: Sequence[str]) -> str:
    """A shell command that re-runs the checks on exactly `head` and shows the diff from `base`."""
    workdir = f"sdlcflow-replay-{head[:12]}"
    steps = [
        f"git clone --quiet {shlex.quote(remote)} {shlex.quote(workdir)}",
        f"cd {shlex.quote(workdir)}",
        f"git checkout --quiet --detach {shlex.quote(head)}",
        f"git diff --stat {shlex.quote(base)} {shlex.quote(head)}",
        *checks,
    ]
    return " && ".join(steps)


def assemble_evidence(request: EvidenceRequest) -> EvidenceBundle:
    """Build the bundle from real git (exact diff, resolved SHAs) and the host's environment."""
    exact = git_diff(request.remote, request.base, request.head)
    return EvidenceBundle(
        repo=request.repo,
        change_id=request.change_id,
        state=StateRef(
            head_sha=exact.head,
            base_sha=exact.base,
            lockfile_digest=request.lockfile_digest,
            artifact_digest=request.artifact_digest,
        ),
        diff=exact.text,
        test_results=tuple(to_plain(dict(result)) for result in request.test_results),
        environment=environment_snapshot(request.tools, request.environ)
        | {"changed_paths": list(exact.paths)},
        policy_bundle_digest=request.policy_bundle_digest,
        policy_decision=to_plain(dict(request.policy_decision)),
        risk_score=request.risk_score,
        required_approvals=request.required_approvals,
        replay_command=replay_command(
            str(request.remote), exact.base, exact.head, tuple(request.checks)
        ),
    )


class EvidenceStore:
    """Evidence bundles by their evidence digest, on top of a content-addressed artifact store."""

    def __init__(self, artifacts: ArtifactStore) -> None:
        self.artifacts = artifacts
        self._index = artifacts.root / "evidence"
        self._index.mkdir(parents=True, exist_ok=True)

    @classmethod
    def at(cls, root: Path) -> EvidenceStore:
        return cls(ArtifactStore(root))

    def put(self, bundle: EvidenceBundle) -> str:
        """Store the bundle (idempotent) and return its evidence digest, the one reviewers sign."""
        digest = bundle.digest()
        artifact = self.artifacts.put(canonical_bytes(bundle.model_dump(mode="json")))
        index = self._index_path(digest)
        if not index.exists():
            tmp = index.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(artifact + "\n", encoding="ascii")
            os.replace(tmp, index)
        return digest

    def get(self, digest: str) -> EvidenceBundle:
        """The bundle whose evidence digest is `digest`; raises EvidenceError if absent/altered."""
        index = self._index_path(digest)
        try:
            artifact = index.read_text(encoding="ascii").strip()
            data = self.artifacts.get(artifact)
        except (FileNotFoundError, ArtifactNotFound):
            raise EvidenceError(
                f"no evidence bundle {digest} in {self.artifacts.root}; the policy step stores "
                "it there — point SDLCFLOW_EVIDENCE_DIR at the store it used"
            ) from None
        try:
            bundle = EvidenceBundle.model_validate_json(data)
        except ValidationError as exc:
            raise EvidenceError(f"evidence bundle {digest} is not a valid bundle: {exc}") from None
        if bundle.digest() != digest:
            raise EvidenceError(
                f"evidence bundle stored as {digest} hashes to {bundle.digest()}; refusing to "
                "show altered evidence — re-run the policy step to rebuild it"
            )
        return bundle

    def exists(self, digest: str) -> bool:
        return _DIGEST.match(digest) is not None and self._index_path(digest).exists()

    def _index_path(self, digest: str) -> Path:
        if not _DIGEST.match(digest):
            raise EvidenceError(
                f"{digest!r} is not an evidence digest; expected 'sha256:' and 64 hex digits"
            )
        return self._index / digest.removeprefix("sha256:")


def default_evidence_root(data_dir: Path) -> Path:
    """Where evidence lives unless SDLCFLOW_EVIDENCE_DIR says otherwise."""
    given = os.environ.get("SDLCFLOW_EVIDENCE_DIR", "").strip()
    return Path(given) if given else data_dir / "artifacts"


@dataclass(frozen=True)
class PolicyFinding:
    """One rule that fired, as a reviewer reads it."""

    policy: str
    mode: str
    outcome: str
    rule: str
    message: str
    input_paths: tuple[str, ...]


@dataclass(frozen=True)
class PolicySummary:
    """The policy evidence of a bundle in one shape, whichever shape the policy step wrote."""

    decision: str
    enforced_decision: str
    findings: tuple[PolicyFinding, ...]
    reasons: tuple[str, ...]


def policy_summary(policy_decision: Mapping[str, Any]) -> PolicySummary:
    """Read a `BundleDecision` dump (sdlcflow.policy) or a plain {decision, reasons} mapping."""
    decision = str(policy_decision.get("decision") or policy_decision.get("outcome") or "")
    enforced = str(policy_decision.get("enforced_outcome") or decision)
    findings = tuple(
        PolicyFinding(
            policy=str(policy.get("policy", "")),
            mode=str(policy.get("mode", "")),
            outcome=str(policy.get("outcome", "")),
            rule=str(finding.get("rule", "")),
            message=str(finding.get("message", "")),
            input_paths=tuple(str(p) for p in finding.get("input_paths", ())),
        )
        for policy in _mappings(policy_decision.get("policies"))
        for finding in _mappings(policy.get("findings"))
    )
    given = policy_decision.get("reasons")
    reasons = (
        tuple(str(r) for r in given)
        if isinstance(given, list | tuple)
        else tuple(f"{f.policy}: {f.message}" for f in findings)
    )
    return PolicySummary(decision, enforced, findings, reasons)


def _mappings(value: object) -> list[Mapping[str, Any]]:
    if not isinstance(value, list | tuple):
        return []
    return [item for item in value if isinstance(item, Mapping)]
