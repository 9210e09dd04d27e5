"""The services' shared start-up turns bad observability settings into plain CLI errors."""

from __future__ import annotations

import socket

import click
import pytest

from sdlcflow.observability import spans
from sdlcflow.observability.service import observed


class TestObserved:
    """A bad exporter or a taken port stops the service with a message naming the fix."""

    def test_an_unknown_tracing_exporter_is_a_cli_error(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv(spans.TRACING_ENV, "zipkin")
        with (
            pytest.raises(click.ClickException, match="off, otlp, file:<path>"),
            observed("svc", metrics_port=None, bootstrap="127.0.0.1:1", groups=[]),
        ):
            pass

    def test_a_taken_metrics_port_is_a_cli_error(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv(spans.TRACING_ENV, raising=False)
        with socket.socket() as taken:
            taken.bind(("0.0.0.0", 0))
            taken.listen()
            port = taken.getsockname()[1]
            with (
                pytest.raises(click.ClickException, match="--metrics-port"),
                observed("svc", metrics_port=port, bootstrap="127.0.0.1:1", groups=[]),
            ):
                pass
