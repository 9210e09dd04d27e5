"""Fixtures for console tests (the world itself lives in console_world.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from console_world import ConsoleWorld, make_world


@pytest.fixture
def world(tmp_path: Path) -> ConsoleWorld:
    return make_world(tmp_path)
