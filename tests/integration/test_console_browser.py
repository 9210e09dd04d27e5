"""The reviewer console in a real headless Chromium: list, open, read evidence, decide."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from confluent_kafka import Consumer
from playwright.sync_api import Browser, Page, expect, sync_playwright

from sdlcflow.approvals.evidence import EvidenceRequest, EvidenceStore, assemble_evidence
from sdlcflow.approvals.testing import (
    CoreDriver,
    EngineLoop,
    create_private_topics,
    issue_reviewer,
    publish_decisions,
)
from sdlcflow.core import events as ev
from sdlcflow.core.events import Actor, ActorKind, Event, VerifiedState
from sdlcflow.gitops.sample import SampleRepo
from sdlcflow.identity import KeyPair, generate_key_pair
from sdlcflow.infra.topics import BrokerFootprint
from sdlcflow.streams.wire import EventCodec

pytestmark = [pytest.mark.integration, pytest.mark.browser]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
APPROVAL = "chg-1/approval"
SCREENSHOT_COPY = Path(os.environ.get("SDLCFLOW_CONSOLE_SCREENSHOT", "/tmp/sdlcflow-console.png"))


@dataclass
class Served:
    url: str
    repo: str
    head: str
    digest: str
    driver: CoreDriver
    issuer: KeyPair
    bootstrap: str
    coordinator_topic: str
    agent_events_topic: str

    def engine(self) -> EngineLoop:
        return EngineLoop(
            self.bootstrap,
            repo=self.repo,
            state=self.driver.state,
            trusted={self.issuer.key_id: self.issuer.public_key},
            inputs_topic=self.agent_events_topic,
            decisions_topic=self.coordinator_topic,
        )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_until_up(url: str, process: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"console exited with {process.returncode}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass  # not listening yet
        time.sleep(0.2)  # poll interval while the server starts
    raise AssertionError(f"console at {url} did not answer within {timeout_s} s")


@pytest.fixture
def served(
    tmp_path: Path,
    kafka_bootstrap: str,
    unique_name: Callable[[str], str],
    footprint: BrokerFootprint,
) -> Iterator[Served]:
    prefix = unique_name("console")
    repo = f"acme/{prefix}"
    coordinator = footprint.topic(f"{prefix}.coordinator")
    agent_events = footprint.topic(f"{prefix}.agent-events")
    create_private_topics(kafka_bootstrap, coordinator, agent_events)
    sample = SampleRepo.create(tmp_path / "git")
    head = sample.commit(
        sample.main,
        "bump",
        {
            "requirements.txt": b"pyjwt==3.0.0\n",
            "service/banner.py": b"BANNER = '<script>alert(1)</script>'\n",
        },
    )
    bundle = assemble_evidence(
        EvidenceRequest(
            repo=repo,
            change_id="chg-1",
            remote=sample.remote,
            base=sample.main,
            head=head,
            lockfile_digest="l1",
            test_results=(
                {"name": "pytest", "outcome": "passed", "passed": 12, "failed": 0},
                {"name": "ruff", "outcome": "passed"},
            ),
            policy_decision={
                "decision": "REVIEW",
                "reasons": ["pyjwt 2.8.0 -> 3.0.0 is a major bump of an auth library"],
            },
            policy_bundle_digest="sha256:" + "2" * 64,
            risk_score=72,
        )
    )
    digest = EvidenceStore.at(tmp_path / "artifacts").put(bundle)
    driver = CoreDriver(repo)
    state = VerifiedState(bundle.state.head_sha, bundle.state.base_sha, "l1", "art", "pol-1")
    driver.to_approval("chg-1", state, digest)
    publish_decisions(kafka_bootstrap, coordinator, driver.log)
    issuer = generate_key_pair("ops-console-it")
    alice = issue_reviewer(tmp_path / "keys", "alice", issuer)
    port = _free_port()
    env = {
        **os.environ,
        "SDLCFLOW_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "SDLCFLOW_APPROVALS_DB": str(tmp_path / "approvals.sqlite"),
        "SDLCFLOW_EVIDENCE_DIR": str(tmp_path / "artifacts"),
        "SDLCFLOW_COORDINATOR_TOPIC": coordinator,
        "SDLCFLOW_AGENT_EVENTS_TOPIC": agent_events,
    }
    command = [
        sys.executable, "-m", "sdlcflow.cli", "console", "--port", str(port),
        "--reviewer-key", str(alice.key_file), "--reviewer-credential", str(alice.credential_file),
        "--wait", "20",
    ]  # fmt: skip
    process = subprocess.Popen(command, env=env)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_until_up(url, process)
        yield Served(
            url, repo, bundle.state.head_sha, digest, driver, issuer, kafka_bootstrap,
            coordinator, agent_events,
        )  # fmt: skip
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    yield context.new_page()
    context.close()


def _signed_decisions(served: Served, timeout_s: float = 30) -> list[Event]:
    """Every decision on the private agent-events topic, read to its end."""
    consumer = Consumer(
        {
            "bootstrap.servers": served.bootstrap,
            "group.id": f"{served.agent_events_topic}-reader",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    consumer.subscribe([served.agent_events_topic])
    codec, found, eof = EventCodec(), [], set()
    deadline = time.monotonic() + timeout_s
    try:
        while len(eof) < 3 and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            if message.error() is not None:
                eof.add(message.partition())
                continue
            found.append(codec.decode(message.value()))
    finally:
        consumer.close()
    return found


class TestReviewerConsoleInChromium:
    """A reviewer lists, opens, reads the evidence and approves; the change moves on."""

    def test_list_open_read_evidence_approve_and_see_the_task_complete(
        self, served: Served, page: Page, tmp_path: Path
    ) -> None:
        page.goto(served.url + "/")
        link = page.locator("a.approval-link", has_text=APPROVAL)
        expect(link).to_be_visible()
        link.click()

        expect(page.locator("#status")).to_have_text("pending")
        expect(page.locator("#head-sha")).to_have_text(served.head)
        expect(page.locator("#evidence-digest")).to_have_text(served.digest)
        expect(page.locator("#diff .highlight")).to_contain_text("+pyjwt==3.0.0")
        expect(page.locator("#diff .highlight .gi").first).to_be_visible()
        expect(page.locator("#diff")).to_contain_text("<script>alert(1)</script>")
        expect(page.locator("#risk-score")).to_have_text("72 / 100")
        expect(page.locator("#policy-reasons")).to_contain_text("major bump of an auth library")
        expect(page.locator("#tests")).to_contain_text("pytest")
        expect(page.locator("#replay")).to_contain_text(
            f"git checkout --quiet --detach {served.head}"
        )
        page.screenshot(path=str(tmp_path / "console.png"), full_page=True)
        SCREENSHOT_COPY.write_bytes((tmp_path / "console.png").read_bytes())

        with served.engine() as engine:
            page.fill("#comment", "Read the diff; the adapter handles pyjwt 3.")
            page.click("#approve")
            expect(page.locator("#outcome")).to_contain_text(
                "Accepted by the coordinator: alice approved (1 of 1)", timeout=30_000
            )
        expect(page.locator("#status")).to_have_text("approved")
        assert engine.state.changes["chg-1"].tasks[APPROVAL].status.value == "SUCCEEDED"
        (signed,) = [e for e in _signed_decisions(served) if e.type == "ApprovalSigned"]
        assert signed.envelope.actor == Actor(ActorKind.HUMAN, "alice")
        assert signed.payload.evidence_digest == served.digest  # type: ignore[union-attr]
        assert signed.payload.comment == "Read the diff; the adapter handles pyjwt 3."  # type: ignore[union-attr]

        page.goto(served.url + "/")
        expect(page.locator("#none-pending")).to_be_visible()

    def test_stale_approval_shows_the_coordinators_reason(self, served: Served, page: Page) -> None:
        page.goto(f"{served.url}/approvals/{APPROVAL}")
        expect(page.locator("#approve")).to_be_visible()
        moved = ev.ChangeUpdated(base_sha="b1", head_sha="f" * 40, lockfile_digest="l2")
        served.driver._feed(moved, Actor(ActorKind.PRODUCER, "webhook"), "chg-1", None)
        with served.engine():
            page.click("#approve")
            expect(page.locator("#outcome")).to_contain_text(
                "Rejected by the coordinator (NOT_AWAITING_APPROVAL)", timeout=30_000
            )

    def test_reject_without_a_reason_gets_a_clear_error_page(
        self, served: Served, page: Page
    ) -> None:
        page.goto(f"{served.url}/approvals/{APPROVAL}")
        page.click("#reject")
        expect(page.locator("#error-message")).to_contain_text("a rejection needs a reason")
        assert _signed_decisions(served, timeout_s=5) == []
