"""Identifier validators match the whole value: `$` would also accept a trailing newline, which
lets a forged trace id, digest or capability name through into headers, paths and audit rows."""

from __future__ import annotations

import pytest

from sdlcflow.agents import agent
from sdlcflow.artifacts._store import check_digest
from sdlcflow.errors import SdlcflowError
from sdlcflow.tracing import is_trace_id

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
DIGEST = "sha256:" + "ab" * 32


class TestTrailingNewlineIsRefused:
    """A valid identifier followed by a newline is not valid."""

    def test_a_trace_id_with_a_trailing_newline_is_not_a_trace_id(self) -> None:
        assert is_trace_id(TRACE_ID)
        assert not is_trace_id(TRACE_ID + "\n")

    def test_an_artifact_digest_with_a_trailing_newline_is_refused(self) -> None:
        assert check_digest(DIGEST) == DIGEST
        with pytest.raises(SdlcflowError, match="not an artifact digest"):
            check_digest(DIGEST + "\n")

    def test_a_capability_name_with_a_trailing_newline_is_refused(self) -> None:
        with pytest.raises(SdlcflowError, match="capability"):
            agent("lint\n")
