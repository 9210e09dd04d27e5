"""The reference agents' work: plain functions of a frozen input and a Workspace, returning a
result whose `outputs()` the agent SDK publishes. Each is idempotent: the same inputs give the
same outputs, because commits, artifacts and reports are built deterministically."""

from sdlcflow.agents.reference._workspace import (
    AgentWorkError,
    WorkCancelled,
    Workspace,
    agent_identity,
)
from sdlcflow.agents.reference.dependency import (
    DependencyUpdateInput,
    DependencyUpdateResult,
    update_dependency,
)
from sdlcflow.agents.reference.deploy import (
    ArtifactMismatch,
    DeployInput,
    DeployResult,
    build_artifact,
    deploy,
)
from sdlcflow.agents.reference.envrename import EnvRenameInput, EnvRenameResult, rename_env_var
from sdlcflow.agents.reference.lint import LintInput, LintResult, lint
from sdlcflow.agents.reference.merge import MergeAgentResult, MergeInput, merge
from sdlcflow.agents.reference.policy_inputs import (
    DependencyChange,
    EnvVarChange,
    MigrationInfo,
    PolicyInputRequest,
    PolicyInputs,
    collect_policy_inputs,
)
from sdlcflow.agents.reference.scan import (
    KNOWN_ADVISORIES,
    Advisory,
    Finding,
    ScanInput,
    ScanResult,
    scan,
)
from sdlcflow.agents.reference.suite import SuiteInput, SuiteResult, run_suite

__all__ = [
    "KNOWN_ADVISORIES",
    "Advisory",
    "AgentWorkError",
    "ArtifactMismatch",
    "DependencyChange",
    "DependencyUpdateInput",
    "DependencyUpdateResult",
    "DeployInput",
    "DeployResult",
    "EnvRenameInput",
    "EnvRenameResult",
    "EnvVarChange",
    "Finding",
    "LintInput",
    "LintResult",
    "MergeAgentResult",
    "MergeInput",
    "MigrationInfo",
    "PolicyInputRequest",
    "PolicyInputs",
    "ScanInput",
    "ScanResult",
    "SuiteInput",
    "SuiteResult",
    "WorkCancelled",
    "Workspace",
    "agent_identity",
    "build_artifact",
    "collect_policy_inputs",
    "deploy",
    "lint",
    "merge",
    "rename_env_var",
    "run_suite",
    "scan",
    "update_dependency",
]
