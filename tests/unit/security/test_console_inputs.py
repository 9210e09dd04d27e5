"""Hostile input to the reviewer console: arbitrary paths, queries and forms (with and without a
valid CSRF token) get a 4xx page with a reason, never a server error, and nothing is signed."""

from __future__ import annotations

from urllib.parse import quote, urlencode

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sdlcflow.approvals.decisions import Reviewer
from sdlcflow.approvals.evidence import EvidenceStore
from sdlcflow.approvals.service import ApprovalsService
from sdlcflow.approvals.store import ApprovalStore
from sdlcflow.approvals.sync import SyncReport
from sdlcflow.approvals.testing import issue_reviewer
from sdlcflow.console.app import SESSION_COOKIE, ConsoleConfig, create_app, csrf_token
from sdlcflow.core.events import Event
from sdlcflow.identity import generate_key_pair

SECRET = b"fuzz-console-secret-0123456789abcdef"
SESSION = "fuzz-session-0123456789"
CASES = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=60)


class _NoBroker:
    """Records what the console would publish; the fuzzed forms must never get this far."""

    def __init__(self) -> None:
        self.sent: list[Event] = []

    def publish(self, _topic: str, event: Event) -> None:
        self.sent.append(event)

    def flush(self) -> None:
        """Nothing is buffered."""


class _OfflineService(ApprovalsService):
    def refresh(self, timeout_s: float = 30.0) -> SyncReport:
        return SyncReport(0, 0, 0)


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> tuple[TestClient, _NoBroker]:
    root = tmp_path_factory.mktemp("console")
    broker = _NoBroker()
    service = _OfflineService(
        ApprovalStore(root / "approvals.sqlite"),
        EvidenceStore.at(root / "artifacts"),
        "unused:9092",
        publisher=lambda: broker,  # type: ignore[arg-type,return-value]
    )
    files = issue_reviewer(root / "keys", "alice", generate_key_pair("ops-fuzz"))
    reviewer = Reviewer.load(files.key_file, str(files.credential_file))
    app = create_app(ConsoleConfig(service, reviewer, decision_wait_s=0, secret=SECRET))
    client = TestClient(app, raise_server_exceptions=False)
    client.cookies.set(SESSION_COOKIE, SESSION)
    return client, broker


class TestConsoleInputs:
    """Whatever a browser or a script sends, the console answers below 500 and signs nothing."""

    @CASES
    @given(approval_id=text, sent=text)
    def test_arbitrary_approval_pages(
        self, console: tuple[TestClient, _NoBroker], approval_id: str, sent: str
    ) -> None:
        client, _ = console
        response = client.get(f"/approvals/{quote(approval_id)}?{urlencode({'sent': sent})}")
        assert response.status_code < 500, response.text[:500]

    @CASES
    @given(
        fields=st.dictionaries(
            st.sampled_from(("approval_id", "verdict", "comment", "csrf", "extra")), text
        ),
        valid_csrf=st.booleans(),
        content_type=st.sampled_from(
            ("application/x-www-form-urlencoded", "multipart/form-data", "text/plain", "")
        ),
    )
    def test_arbitrary_decision_forms(
        self,
        console: tuple[TestClient, _NoBroker],
        fields: dict[str, str],
        valid_csrf: bool,
        content_type: str,
    ) -> None:
        client, broker = console
        if valid_csrf:
            fields["csrf"] = csrf_token(SECRET, SESSION)
        response = client.post(
            "/decide",
            content=urlencode(fields).encode(),
            headers={"content-type": content_type},
            follow_redirects=False,
        )
        assert 400 <= response.status_code < 500, (response.status_code, response.text[:500])
        assert not broker.sent

    @CASES
    @given(body=st.binary(max_size=20_000))
    def test_arbitrary_bytes_as_a_form(
        self, console: tuple[TestClient, _NoBroker], body: bytes
    ) -> None:
        client, broker = console
        response = client.post(
            "/decide",
            content=body,
            headers={"content-type": "application/x-www-form-urlencoded"},
            follow_redirects=False,
        )
        assert 400 <= response.status_code < 500, (response.status_code, response.text[:500])
        assert not broker.sent
