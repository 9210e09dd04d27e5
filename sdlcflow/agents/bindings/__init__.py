"""The reference agents bound to the agent SDK: one `@agent` function per template capability.

`sdlcflow run agent <capability>` looks capabilities up in REFERENCE_AGENTS. Configuration
(all environment variables, read when a task runs):
  SDLCFLOW_GIT_REMOTES  JSON {"<repo>": "<bare repository path>"}; or
  SDLCFLOW_GIT_ROOT     a directory holding <repo>.git (e.g. acme/service.git)
  SDLCFLOW_DATA_DIR     artifacts (…/artifacts), releases (…/artifacts/envs), check results
  SDLCFLOW_MERGE_TARGET the branch merges land on (default main)
  SDLCFLOW_POLICY_BUNDLE, SDLCFLOW_POLICY_MODE  the bundle evaluated and enforce|audit
  SDLCFLOW_SCAN_LOCKFILES  lockfiles the security scan checks (default requirements.lock)

The `approval` capability has no agent: the coordinator never offers human-authority tasks,
it emits ApprovalRequested with the evidence digest the policy agent stored, and reviewers'
ApprovalSigned events complete the task.
"""

from collections.abc import Callable, Mapping
from typing import Any

from sdlcflow.agents.bindings._runtime import remote_for
from sdlcflow.agents.bindings.checks import lint_agent, suite_agent
from sdlcflow.agents.bindings.dependency import dependency_update_agent
from sdlcflow.agents.bindings.deploy import deploy_agent, promote_agent
from sdlcflow.agents.bindings.merge import merge_agent
from sdlcflow.agents.bindings.policy import policy_agent
from sdlcflow.agents.bindings.scan import security_scan_agent

REFERENCE_AGENTS: Mapping[str, Callable[..., Any]] = {
    "lint": lint_agent,
    "test": suite_agent,
    "policy": policy_agent,
    "merge": merge_agent,
    "deploy": deploy_agent,
    "promote": promote_agent,
    "security-scan": security_scan_agent,
    "dependency-update": dependency_update_agent,
}

__all__ = [
    "REFERENCE_AGENTS",
    "dependency_update_agent",
    "deploy_agent",
    "lint_agent",
    "merge_agent",
    "policy_agent",
    "promote_agent",
    "remote_for",
    "security_scan_agent",
    "suite_agent",
]
