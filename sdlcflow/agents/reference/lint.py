"""The lint agent: ruff on a fresh checkout of one SHA, the findings stored as a report."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdlcflow.agents.reference._workspace import AgentWorkError, Workspace, python_executable
from sdlcflow.gitops import checkout, resolve

_RUFF_FAILED = 2


@dataclass(frozen=True)
class LintInput:
    remote: Path
    sha: str


@dataclass(frozen=True)
class LintResult:
    """Findings of ruff at `sha`; `report` is the digest of the normalized JSON report."""

    sha: str
    passed: bool
    findings: int
    report: str

    def outputs(self) -> dict[str, str]:
        return {
            "sha": self.sha,
            "passed": str(self.passed).lower(),
            "findings": str(self.findings),
            "report": self.report,
        }


def lint(request: LintInput, workspace: Workspace) -> LintResult:
    """Run `ruff check` on the tree at `request.sha`; the same tree gives the same report."""
    sha = resolve(request.remote, request.sha)
    with checkout(request.remote, sha, parent=workspace.scratch) as tree:
        ran = workspace.run(
            [
                python_executable(),
                "-m",
                "ruff",
                "check",
                "--no-cache",
                "--output-format",
                "json",
                ".",
            ],
            cwd=tree.path,
        )
        if ran.timed_out or ran.exit_code >= _RUFF_FAILED or ran.exit_code < 0:
            raise AgentWorkError(
                f"ruff could not check {sha} (exit {ran.exit_code}, timed out: {ran.timed_out}); "
                f"its output is artifact {ran.stderr_digest}"
            )
        findings = _normalize(json.loads(ran.stdout or b"[]"), tree.path)
    report = {"sha": sha, "tool": "ruff", "findings": findings}
    digest = workspace.store.put(json.dumps(report, sort_keys=True, indent=1).encode() + b"\n")
    return LintResult(sha=sha, passed=not findings, findings=len(findings), report=digest)


def _normalize(raw: list[dict[str, Any]], root: Path) -> list[dict[str, Any]]:
    """Findings with paths relative to the checkout, in a stable order."""
    findings = []
    for item in raw:
        location, end = item.get("location") or {}, item.get("end_location") or {}
        path = Path(item.get("filename", ""))
        findings.append(
            {
                "path": str(path.relative_to(root) if path.is_absolute() else path),
                "code": item.get("code"),
                "message": item.get("message"),
                "line": location.get("row"),
                "column": location.get("column"),
                "end_line": end.get("row"),
                "end_column": end.get("column"),
                "fixable": item.get("fix") is not None,
            }
        )
    return sorted(
        findings, key=lambda f: (f["path"], f["line"] or 0, f["column"] or 0, f["code"] or "")
    )
