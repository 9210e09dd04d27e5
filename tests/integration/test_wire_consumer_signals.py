"""The consumer helper's poll loop stops promptly and cleanly on SIGTERM and SIGINT."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable

import pytest

from sdlcflow.streams.topics import AGENT_EVENTS

pytestmark = pytest.mark.integration

SCRIPT = textwrap.dedent(
    """
    import sys
    from sdlcflow.core.events import Actor, ActorKind
    from sdlcflow.streams.consumer import EventConsumer

    consumer = EventConsumer(
        [sys.argv[1]], group_id=sys.argv[2], actor=Actor(ActorKind.OPS, "signal-test"),
        from_beginning=False,
    )
    with consumer:
        print("ready", flush=True)
        consumer.run(lambda delivery: None)
    print("stopped", flush=True)
    """
)


class TestSignals:
    """A signal ends the loop within a poll interval; the process exits 0 after closing."""

    @pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
    def test_a_signal_stops_the_loop_cleanly(
        self, kafka_bootstrap: str, unique_name: Callable[[str], str], signum: int
    ) -> None:
        env = {**os.environ, "SDLCFLOW_KAFKA_BOOTSTRAP": kafka_bootstrap}
        process = subprocess.Popen(
            [sys.executable, "-c", SCRIPT, AGENT_EVENTS, unique_name("signals")],
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            assert process.stdout is not None
            assert process.stdout.readline().strip() == "ready"
            process.send_signal(signum)
            out, err = process.communicate(timeout=20)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        assert process.returncode == 0, err
        assert out.strip() == "stopped"
