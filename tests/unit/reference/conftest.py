from pathlib import Path

import pytest

from sdlcflow.agents.reference import Workspace
from sdlcflow.gitops.sample import SampleRepo


@pytest.fixture
def sample(tmp_path: Path) -> SampleRepo:
    return SampleRepo.create(tmp_path)


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    return Workspace.at(tmp_path / "workspace", timeout_s=120)
