"""The reviewer console: lists, shows evidence safely, and signs decisions the core accepts."""

from __future__ import annotations

import re
from pathlib import Path

from console_world import HOSTILE, REPO, SECRET, ConsoleWorld, make_world

from sdlcflow.approvals.store import ApprovalStatus
from sdlcflow.approvals.testing import decision
from sdlcflow.console.app import SESSION_COOKIE, csrf_token
from sdlcflow.core import events as ev


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert found, "the decision form carries a CSRF token"
    return found.group(1)


def _decide(world: ConsoleWorld, verdict: str, comment: str = "") -> tuple[int, str]:
    page = world.client.get(f"/approvals/{world.approval_id}")
    response = world.client.post(
        "/decide",
        data={
            "csrf": _csrf(page.text),
            "approval_id": world.approval_id,
            "verdict": verdict,
            "comment": comment,
        },
    )
    return response.status_code, response.text


class TestListAndShow:
    """Pending approvals are listed; the evidence is shown with the diff coloured."""

    def test_index_lists_the_pending_approval(self, world: ConsoleWorld) -> None:
        page = world.client.get("/")
        assert page.status_code == 200
        assert 'href="/approvals/chg-1/approval"' in page.text
        assert "0 of 1" in page.text

    def test_detail_shows_diff_tests_policy_risk_replay_and_env_names(
        self, world: ConsoleWorld
    ) -> None:
        page = world.client.get(f"/approvals/{world.approval_id}").text
        assert '<div class="highlight">' in page and 'class="gi"' in page  # pygments: inserted
        assert "pyjwt==3.0.0" in page
        assert "72 / 100" in page and "REVIEW" in page and "pytest" in page
        assert "git clone" in page and world.store.get(world.approval_id).state.head_sha in page
        assert "AUTH_SECRET" in page and "s3cret-value" not in page

    def test_everything_from_the_evidence_is_escaped(self, world: ConsoleWorld) -> None:
        page = world.client.get(f"/approvals/{world.approval_id}").text
        assert HOSTILE not in page and "<script>x</script>" not in page
        assert "&lt;img src=x onerror=" in page

    def test_pages_forbid_scripts_and_framing(self, world: ConsoleWorld) -> None:
        headers = world.client.get("/").headers
        assert "default-src 'none'" in headers["content-security-policy"]
        assert headers["x-frame-options"] == "DENY"

    def test_unknown_approval_is_a_clear_404(self, world: ConsoleWorld) -> None:
        page = world.client.get("/approvals/nope/approval")
        assert page.status_code == 404 and "sdlcflow approvals list" in page.text

    def test_escalated_approval_shows_the_group_on_list_and_detail(
        self, world: ConsoleWorld
    ) -> None:
        raised = ev.EscalationRaised("timed out", ev.Severity.WARNING, world.approval_id, "leads")
        world.store.apply_event(
            decision(raised, repo=REPO, change_id="chg-1", task_id=world.approval_id)
        )
        listed = world.client.get("/").text
        assert '<td class="escalation">leads</td>' in listed
        detail = world.client.get(f"/approvals/{world.approval_id}").text
        assert 'id="escalation"' in detail and "<strong>leads</strong>" in detail

    def test_stylesheet_includes_the_diff_colours(self, world: ConsoleWorld) -> None:
        css = world.client.get("/static/console.css")
        assert css.headers["content-type"].startswith("text/css") and ".highlight .gi" in css.text


class TestDecisions:
    """Approve and reject sign with the server-side profile and show the coordinator's verdict."""

    def test_approve_is_accepted_and_the_approval_completes(self, world: ConsoleWorld) -> None:
        status, page = _decide(world, "approve", "looks right")
        assert status == 200
        assert "Accepted by the coordinator: alice approved (1 of 1)" in page
        assert world.store.get(world.approval_id).status is ApprovalStatus.APPROVED
        (sent,) = world.coordinator.sent
        assert sent.envelope.credential == world.reviewer.token and sent.envelope.signature

    def test_reject_blocks_the_change_with_the_reviewers_reason(self, world: ConsoleWorld) -> None:
        status, page = _decide(world, "reject", "no rollback plan")
        assert status == 200
        assert "approval rejected by alice: no rollback plan" in page
        assert world.store.get(world.approval_id).status is ApprovalStatus.REJECTED

    def test_decided_approval_with_a_valid_token_says_it_is_already_decided(
        self, world: ConsoleWorld
    ) -> None:
        page = world.client.get(f"/approvals/{world.approval_id}")
        token = _csrf(page.text)
        _decide(world, "approve")
        response = world.client.post(
            "/decide",
            data={"csrf": token, "approval_id": world.approval_id, "verdict": "approve"},
        )
        assert response.status_code == 409 and "already approved" in response.text


class TestFormSafety:
    """Forms need this session's CSRF token and valid fields; read-only consoles sign nothing."""

    def test_missing_or_foreign_token_is_refused(self, world: ConsoleWorld) -> None:
        world.client.get("/")
        for token in ("", "0" * 64):
            response = world.client.post(
                "/decide",
                data={"csrf": token, "approval_id": world.approval_id, "verdict": "approve"},
            )
            assert response.status_code == 403 and "security token" in response.text
        assert world.coordinator.sent == []

    def test_invalid_verdict_and_reject_without_reason_are_422(self, world: ConsoleWorld) -> None:
        assert _decide(world, "maybe")[0] == 422
        status, page = _decide(world, "reject", "   ")
        assert status == 422 and "needs a reason" in page
        assert world.coordinator.sent == []

    def test_json_body_is_not_a_form(self, world: ConsoleWorld) -> None:
        response = world.client.post("/decide", json={"verdict": "approve"})
        assert response.status_code == 422 and "url-encoded" in response.text

    def test_read_only_console_shows_no_form_and_signs_nothing(self, tmp_path: Path) -> None:
        world = make_world(tmp_path, read_only=True)
        page = world.client.get(f"/approvals/{world.approval_id}").text
        assert 'id="decision-form"' not in page and "read-only" in page
        response = world.client.post(
            "/decide",
            data={
                "csrf": _csrf_from_cookie(world),
                "approval_id": world.approval_id,
                "verdict": "approve",
            },
        )
        assert response.status_code == 403 and "--reviewer-key" in response.text


def _csrf_from_cookie(world: ConsoleWorld) -> str:
    session = world.client.cookies.get(SESSION_COOKIE)
    assert session, "every page sets the session cookie"
    return csrf_token(SECRET, session)
