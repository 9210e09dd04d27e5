"""The policy INPUT document: what agents and the coordinator hand to every policy.

Policies read `input.<field>` exactly as named here, so this model is the contract between
whoever builds the input (an agent inspecting the change) and whoever writes Rego. Extra
fields are refused, so a typo in an agent shows up as an error instead of a silent PASS.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

INPUT_SCHEMA_VERSION = 1


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ChangeKind(StrEnum):
    """What kind of change this is (the change request's own declaration)."""

    CODE = "code"
    REFACTOR = "refactor"
    DEPENDENCY = "dependency"
    CONFIG = "config"
    MIGRATION = "migration"
    INFRA = "infra"
    DOCS = "docs"
    RELEASE = "release"


class FileStatus(StrEnum):
    ADDED = "added"
    MODIFIED = "modified"
    REMOVED = "removed"
    RENAMED = "renamed"


class FileChange(_Frozen):
    """One path the diff touches; `previous_path` is set for renames."""

    path: str
    status: FileStatus = FileStatus.MODIFIED
    previous_path: str | None = None


class DependencyChange(_Frozen):
    """A dependency added, removed or moved between versions (None = absent on that side)."""

    name: str
    ecosystem: str = "pypi"
    from_version: str | None = None
    to_version: str | None = None
    manifest: str = ""


class EnvVarChangeKind(StrEnum):
    ADDED = "added"
    RENAMED = "renamed"
    REMOVED = "removed"


class EnvVarChange(_Frozen):
    """An environment variable the change adds, renames (to `new_name`) or removes."""

    name: str
    change: EnvVarChangeKind
    new_name: str | None = None
    path: str = ""


class EnvVarReference(_Frozen):
    """A place in the repository (at head) that still reads an environment variable."""

    name: str
    path: str
    line: int = 0


class Migration(_Frozen):
    """A database migration in the change and whether it declares how to undo it."""

    id: str
    path: str
    has_rollback: bool = False
    rollback_path: str | None = None
    destructive: bool = False


class TestStatus(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    ERRORED = "errored"
    SKIPPED = "skipped"


class TestResult(_Frozen):
    """One test suite's outcome and the exact commit SHA it ran on."""

    __test__ = False  # not a pytest class

    suite: str
    status: TestStatus
    sha: str
    required: bool = True
    url: str = ""


class PolicyInput(_Frozen):
    """Everything a policy may look at for one change at one state (head SHA + lockfile)."""

    schema_version: int = INPUT_SCHEMA_VERSION
    repo: str
    change_id: str = ""
    change_kind: ChangeKind = ChangeKind.CODE
    base_sha: str
    head_sha: str
    lockfile_digest: str = ""
    artifact_digest: str = ""
    target_environment: str = ""
    author: str = ""
    files_changed: tuple[FileChange, ...] = ()
    dependency_changes: tuple[DependencyChange, ...] = ()
    env_var_changes: tuple[EnvVarChange, ...] = ()
    env_var_references: tuple[EnvVarReference, ...] = ()
    migrations: tuple[Migration, ...] = ()
    test_results: tuple[TestResult, ...] = ()
    labels: tuple[str, ...] = ()
    extra: dict[str, Any] = Field(default_factory=dict)

    def document(self) -> dict[str, Any]:
        """The JSON document Rego sees as `input`."""
        return self.model_dump(mode="json")
