from pathlib import Path

import pytest

from sdlcflow.gitops.sample import SampleRepo


@pytest.fixture
def sample(tmp_path: Path) -> SampleRepo:
    return SampleRepo.create(tmp_path)
