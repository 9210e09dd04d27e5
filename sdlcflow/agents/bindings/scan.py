"""The security-scan capability: scan the tree at the leased head for committed credentials and
lockfile pins with known vulnerabilities.

Findings are a verdict, not an accident: they are reported as a non-retryable TaskFailed that
names the stored report (so the change fails instead of retrying); a clean tree succeeds with
the report as its artifact. SDLCFLOW_SCAN_LOCKFILES (comma-separated, default
`requirements.lock`) names the lockfiles checked.
"""

from __future__ import annotations

import os

from sdlcflow.agents._context import context
from sdlcflow.agents._decorator import agent
from sdlcflow.agents._errors import TaskFailure
from sdlcflow.agents._result import TaskResult
from sdlcflow.agents.bindings._runtime import remote_for, required_input, workspace_for
from sdlcflow.agents.reference import ScanInput, scan
from sdlcflow.core.events import ArtifactRef, TaskContract

LOCKFILES_ENV = "SDLCFLOW_SCAN_LOCKFILES"
DEFAULT_LOCKFILES = ("requirements.lock",)


def scanned_lockfiles() -> tuple[str, ...]:
    """The lockfiles whose pins are checked against the advisories."""
    raw = os.environ.get(LOCKFILES_ENV, "")
    named = tuple(part.strip() for part in raw.split(",") if part.strip())
    return named or DEFAULT_LOCKFILES


@agent("security-scan")
def security_scan_agent(task: TaskContract) -> TaskResult:
    """Secrets and vulnerable pins at the leased head; the report is the artifact either way."""
    ctx = context()
    head = required_input(ctx, "head")
    result = scan(ScanInput(remote_for(ctx.repo), head, scanned_lockfiles()), workspace_for(ctx))
    ctx.ensure_live()
    if not result.passed:
        rules = sorted({f.rule for f in result.findings})
        raise TaskFailure(
            f"security scan found {len(result.findings)} problem(s) at {head} "
            f"({', '.join(rules)}); report {result.report}",
            retryable=False,
        )
    return TaskResult(artifacts=(ArtifactRef("security-report", result.report),))
