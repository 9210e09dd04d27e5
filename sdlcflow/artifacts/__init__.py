"""The artifact plane: a content-addressed store, tag records and environment release logs.

Everything here is append-only and verifiable: artifacts are named by their sha256, and tag and
release logs are hash-chained JSON lines, so a rewrite is detected rather than believed.
"""

from sdlcflow.artifacts._journal import Journal, JournalTampered
from sdlcflow.artifacts._releases import (
    ENVIRONMENTS,
    DeployOutcome,
    Release,
    ReleaseAction,
    ReleaseError,
    Releases,
    Slot,
    SmokeCheck,
    SmokeOutcome,
)
from sdlcflow.artifacts._store import (
    ArtifactError,
    ArtifactNotFound,
    ArtifactStore,
    ArtifactTampered,
    check_digest,
    digest_of,
)
from sdlcflow.artifacts._tags import TagRecord, Tags

__all__ = [
    "ENVIRONMENTS",
    "ArtifactError",
    "ArtifactNotFound",
    "ArtifactStore",
    "ArtifactTampered",
    "DeployOutcome",
    "Journal",
    "JournalTampered",
    "Release",
    "ReleaseAction",
    "ReleaseError",
    "Releases",
    "Slot",
    "SmokeCheck",
    "SmokeOutcome",
    "TagRecord",
    "Tags",
    "check_digest",
    "digest_of",
]
