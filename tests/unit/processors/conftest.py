"""Fixtures of the coordinator shell's unit tests."""

from __future__ import annotations

import pytest
from processors_harness import Harness, make_harness


@pytest.fixture
def harness() -> Harness:
    """A fresh engine with dict tables, a settable clock and a trusted test issuer."""
    return make_harness()
