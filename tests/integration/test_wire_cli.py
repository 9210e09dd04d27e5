"""`sdlcflow submit` puts a change request on the log and `sdlcflow events tail` shows it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO

import pytest
from click.testing import CliRunner
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from sdlcflow.cli import cli
from sdlcflow.core.events import Actor, ActorKind
from sdlcflow.infra.topics import BrokerFootprint
from sdlcflow.streams.codec import DecodeReason
from sdlcflow.streams.deadletter import MessageDeadLettered, dead_letter_event
from sdlcflow.streams.producer import EventPublisher
from sdlcflow.streams.topics import CHANGE_REQUESTS
from sdlcflow.tracing import is_trace_id

pytestmark = pytest.mark.integration

BASE = "a" * 40
HEAD = "b" * 40


def _wait_for_line(stream: IO[str], needle: str, timeout: float) -> str:
    """The first line of `stream` containing `needle`, read without blocking the test forever."""
    found: list[str] = []
    done = threading.Event()

    def read() -> None:
        for line in stream:
            if needle in line:
                found.append(line)
                break
        done.set()

    threading.Thread(target=read, daemon=True).start()
    assert done.wait(timeout), f"no line with {needle!r} within {timeout} s"
    assert found, f"stream ended without a line containing {needle!r}"
    return found[0]


@contextmanager
def _tail(bootstrap: str, *args: str) -> Iterator[subprocess.Popen[str]]:
    """`sdlcflow events tail` as a person runs it, ready once it says it is tailing."""
    env = {**os.environ, "SDLCFLOW_KAFKA_BOOTSTRAP": bootstrap}
    command = [sys.executable, "-m", "sdlcflow.cli", "events", "tail", *args]
    process = subprocess.Popen(
        command, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert process.stderr is not None
        _wait_for_line(process.stderr, "tailing", timeout=60)
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
        process.wait(timeout=30)


def _submit(bootstrap: str, repo: str) -> dict[str, str]:
    result = CliRunner().invoke(
        cli,
        [
            "submit",
            "--repo",
            repo,
            "--base",
            BASE,
            "--head",
            HEAD,
            "--kind",
            "dependency-update",
            "--title",
            "bump auth",
            "--path",
            "src/auth/**",
            "--json",
        ],
        env={"SDLCFLOW_KAFKA_BOOTSTRAP": bootstrap},
    )
    assert result.exit_code == 0, result.output
    submitted: dict[str, str] = json.loads(result.output)
    return submitted


class TestSubmitAndTail:
    """A submitted change shows up in a live tail, for scripts and for people."""

    def test_tail_json_shows_the_submitted_change(self, kafka_bootstrap: str) -> None:
        repo = f"acme/cli-{uuid.uuid4().hex[:8]}"
        with _tail(
            kafka_bootstrap,
            CHANGE_REQUESTS,
            "--repo",
            repo,
            "--max",
            "1",
            "--json",
            "--timeout",
            "60",
        ) as tail:
            submitted = _submit(kafka_bootstrap, repo)
            out, err = tail.communicate(timeout=90)
        assert tail.returncode == 0, err
        shown = json.loads(out.strip().splitlines()[-1])
        assert shown["envelope"]["change_id"] == submitted["change_id"]
        assert shown["envelope"]["trace_id"] == submitted["trace_id"]
        assert shown["envelope"]["event_id"] == submitted["event_id"]
        assert shown["payload"]["kind"] == "dependency-update"
        assert shown["payload"]["paths"] == ["src/auth/**"]

    def test_tail_shows_a_person_one_line_per_event(self, kafka_bootstrap: str) -> None:
        repo = f"acme/cli-{uuid.uuid4().hex[:8]}"
        with _tail(
            kafka_bootstrap, CHANGE_REQUESTS, "--repo", repo, "--max", "1", "--timeout", "60"
        ) as tail:
            submitted = _submit(kafka_bootstrap, repo)
            out, err = tail.communicate(timeout=90)
        assert tail.returncode == 0, err
        (line,) = out.strip().splitlines()
        assert "ChangeRequested" in line
        assert repo in line
        assert submitted["change_id"] in line
        assert "title=bump auth" in line

    def test_submit_prints_the_change_and_trace_ids(self, kafka_bootstrap: str) -> None:
        result = CliRunner().invoke(
            cli,
            ["submit", "--repo", "acme/web", "--base", BASE, "--head", HEAD, "--kind", "refactor"],
            env={"SDLCFLOW_KAFKA_BOOTSTRAP": kafka_bootstrap},
        )
        assert result.exit_code == 0, result.output
        change = re.search(r"submitted change (\S+)", result.output)
        trace = re.search(r"trace\s+(\S+)", result.output)
        assert change is not None and trace is not None, result.output
        assert str(uuid.UUID(change.group(1))) == change.group(1)
        assert is_trace_id(trace.group(1))


@pytest.fixture
def topic(admin: AdminClient, unique_name: Callable[[str], str], footprint: BrokerFootprint) -> str:
    name = footprint.topic(unique_name("wire_cli"))
    for future in admin.create_topics([NewTopic(name, 1, 1)], operation_timeout=30).values():
        future.result(timeout=60)
    return name


def _tail_from_beginning(bootstrap: str, topic: str) -> str:
    result = CliRunner().invoke(
        cli,
        ["events", "tail", topic, "--from-beginning", "--max", "1", "--timeout", "60"],
        env={"SDLCFLOW_KAFKA_BOOTSTRAP": bootstrap},
    )
    assert result.exit_code == 0, result.output
    return result.output


class TestTailShowsRefusals:
    """Undecodable messages and dead letters are shown with their reason, not hidden."""

    def test_an_undecodable_message_is_shown_with_its_reason(
        self, kafka_bootstrap: str, topic: str
    ) -> None:
        producer = Producer({"bootstrap.servers": kafka_bootstrap})
        producer.produce(topic, key=b"acme/web", value=b"plain text")
        assert producer.flush(30) == 0
        output = _tail_from_beginning(kafka_bootstrap, topic)
        assert "UNDECODABLE" in output
        assert DecodeReason.NOT_WIRE_FORMAT.value in output

    def test_a_dead_letter_is_shown_with_its_reason_and_origin(
        self, kafka_bootstrap: str, topic: str
    ) -> None:
        letter = MessageDeadLettered(
            "unknown-schema-id", "schema id 7", "sdlc.agent-events", 2, 41, "audit"
        )
        event = dead_letter_event(
            letter, actor=Actor(ActorKind.OPS, "tests"), occurred_at=1_700_000_000_000
        )
        with EventPublisher(kafka_bootstrap) as publisher:
            publisher.publish(topic, event)
        output = _tail_from_beginning(kafka_bootstrap, topic)
        assert "DEAD-LETTER" in output
        assert "unknown-schema-id" in output
        assert "sdlc.agent-events[2]@41" in output
