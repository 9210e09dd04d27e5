"""The reviewer console: a small server-rendered FastAPI app over the approvals service.

Security model, in short:
- Private keys never cross the wire: the server signs with the reviewer profile it was started
  with (`--reviewer-key`, `--reviewer-credential`); it binds to 127.0.0.1 by default.
- Every template is autoescaped; diffs are rendered by pygments, which escapes the text too;
  a strict Content-Security-Policy forbids scripts and inline styles altogether.
- Forms carry a CSRF token: an HMAC (server secret) of a per-browser session cookie that is
  HttpOnly and SameSite=Strict; a POST without the matching pair is refused.
- Form input is validated by pydantic before anything is signed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Literal
from urllib.parse import parse_qs, quote

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import DiffLexer
from starlette.concurrency import run_in_threadpool

from sdlcflow.approvals.decisions import MAX_COMMENT, DecisionRefused, Reviewer, ReviewerError
from sdlcflow.approvals.evidence import EvidenceError, policy_summary
from sdlcflow.approvals.service import ApprovalsService
from sdlcflow.approvals.store import Approval, ApprovalStatus, UnknownApproval
from sdlcflow.approvals.sync import SyncError
from sdlcflow.errors import SdlcflowError
from sdlcflow.identity import EvidenceBundle

log = logging.getLogger(__name__)

SESSION_COOKIE = "sdlcflow_session"
MAX_FORM_BYTES = 16 * 1024
MAX_DIFF_CHARS = 400_000
_APPROVAL_ID = r"^[A-Za-z0-9._:@/+-]{1,300}$"
_EVENT_ID = re.compile(r"^[0-9a-f-]{36}\Z")
_CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)


class CsrfRejected(SdlcflowError):
    """A form arrived without the token this browser session was given."""


class BadForm(SdlcflowError):
    """A form that is not url-encoded, too large, or fails validation."""


class DecisionForm(BaseModel):
    """The approve/reject form, validated before anything is signed."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    approval_id: str = Field(pattern=_APPROVAL_ID)
    verdict: Literal["approve", "reject"]
    comment: str = Field(default="", max_length=MAX_COMMENT)
    csrf: str = Field(min_length=16, max_length=128)

    @model_validator(mode="after")
    def _reject_needs_reason(self) -> DecisionForm:
        if self.verdict == "reject" and not self.comment:
            raise ValueError("a rejection needs a reason in the comment: the author must know why")
        return self


@dataclass
class ConsoleConfig:
    """What the console serves and as whom.

    Args:
        service: approvals read model, evidence store and the way to Kafka.
        reviewer: the local reviewer profile that signs; None makes the console read-only.
        decision_wait_s: how long a decision waits for the coordinator's verdict.
        refresh_every_s: at most one catch-up read of the log per this many seconds.
        secret: HMAC key for CSRF tokens (random per server start).
    """

    service: ApprovalsService
    reviewer: Reviewer | None = None
    decision_wait_s: float = 5.0
    refresh_every_s: float = 1.0
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32))


class _Refresher:
    """Catch-up reads of the log, at most one at a time and one per interval."""

    def __init__(self, service: ApprovalsService, every_s: float) -> None:
        self.service = service
        self.every_s = every_s
        self._lock = threading.Lock()
        self._last = 0.0
        self.problem = ""

    def __call__(self, force: bool = False) -> str:
        with self._lock:
            if force or time.monotonic() - self._last >= self.every_s:
                try:
                    self.service.refresh(timeout_s=10.0)
                    self.problem = ""
                except SyncError as exc:
                    self.problem = str(exc)
                self._last = time.monotonic()
            return self.problem


def csrf_token(secret: bytes, session: str) -> str:
    return hmac.new(secret, f"csrf:{session}".encode(), hashlib.sha256).hexdigest()


def render_diff(diff: str) -> str:
    """The diff as HTML with syntax colours; pygments escapes every character of the input."""
    clipped = diff if len(diff) <= MAX_DIFF_CHARS else diff[:MAX_DIFF_CHARS]
    return str(highlight(clipped, DiffLexer(), HtmlFormatter(cssclass="highlight")))


def pretty(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False)


def _templates() -> Environment:
    env = Environment(
        loader=PackageLoader("sdlcflow.console", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["pretty"] = pretty
    env.filters["urlquote"] = lambda v: quote(str(v), safe="/")
    env.filters["when"] = lambda ms: time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ms / 1000))
    return env


def create_app(config: ConsoleConfig) -> FastAPI:
    """The console app; everything it needs comes from `config`."""
    app = FastAPI(title="sdlcflow reviewer console", docs_url=None, redoc_url=None)
    templates = _templates()
    refresh = _Refresher(config.service, config.refresh_every_s)
    service = config.service
    css = resources.files("sdlcflow.console").joinpath("static/console.css").read_text("utf-8")
    pygments_css = HtmlFormatter(style="default").get_style_defs(".highlight")

    def page(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        session = request.cookies.get(SESSION_COOKIE) or secrets.token_urlsafe(24)
        body = templates.get_template(name).render(
            reviewer=config.reviewer.actor_id if config.reviewer else None,
            csrf=csrf_token(config.secret, session),
            **context,
        )
        response = HTMLResponse(body, status_code=status)
        if request.cookies.get(SESSION_COOKIE) != session:
            response.set_cookie(SESSION_COOKIE, session, httponly=True, samesite="strict", path="/")
        return response

    def error(request: Request, status: int, title: str, message: str) -> HTMLResponse:
        return page(request, "error.html", status, title=title, message=message)

    @app.middleware("http")
    async def security_headers(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        response.headers["Content-Security-Policy"] = _CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.exception_handler(UnknownApproval)
    def unknown(request: Request, exc: UnknownApproval) -> HTMLResponse:
        return error(request, 404, "No such approval", str(exc))

    @app.exception_handler(CsrfRejected)
    def csrf_rejected(request: Request, exc: CsrfRejected) -> HTMLResponse:
        return error(request, 403, "Form expired or forged", str(exc))

    @app.exception_handler(BadForm)
    def bad_form(request: Request, exc: BadForm) -> HTMLResponse:
        return error(request, 422, "The form is not valid", str(exc))

    @app.exception_handler(ReviewerError)
    def reviewer_error(request: Request, exc: ReviewerError) -> HTMLResponse:
        return error(request, 403, "You cannot sign this decision", str(exc))

    @app.exception_handler(DecisionRefused)
    def refused(request: Request, exc: DecisionRefused) -> HTMLResponse:
        return error(request, 409, "Decision not sent", str(exc))

    @app.exception_handler(SdlcflowError)
    def failure(request: Request, exc: SdlcflowError) -> HTMLResponse:
        log.warning("console request failed: %s", exc)
        return error(request, 500, "Something went wrong", str(exc))

    @app.get("/static/console.css")
    def stylesheet() -> Response:
        return Response(css + "\n" + pygments_css, media_type="text/css")

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/", response_class=HTMLResponse)
    def index(request: Request) -> HTMLResponse:
        problem = refresh()
        return page(request, "list.html", approvals=service.store.pending(), problem=problem)

    @app.get("/approvals/{approval_id:path}", response_class=HTMLResponse)
    def show(request: Request, approval_id: str, sent: str = "") -> HTMLResponse:
        problem = refresh(force=bool(sent))
        approval = service.approval(approval_id)
        bundle, evidence_problem = _bundle(service, approval)
        outcome = service.store.outcome(sent) if _EVENT_ID.match(sent) else None
        return page(
            request,
            "detail.html",
            approval=approval,
            bundle=bundle,
            policy=policy_summary(bundle.policy_decision) if bundle else None,
            diff_html=render_diff(bundle.diff) if bundle else "",
            diff_clipped=bool(bundle and len(bundle.diff) > MAX_DIFF_CHARS),
            evidence_problem=evidence_problem,
            problem=problem,
            decidable=approval.status is ApprovalStatus.PENDING and bundle is not None,
            sent=sent if _EVENT_ID.match(sent) else "",
            outcome=outcome,
            max_comment=MAX_COMMENT,
        )

    @app.post("/decide")
    async def decide(request: Request) -> Response:
        form = await _decision_form(request, config.secret)
        if config.reviewer is None:
            raise ReviewerError(
                "this console is read-only: start it with --reviewer-key and "
                "--reviewer-credential to sign decisions"
            )
        reviewer = config.reviewer
        sent = await _in_thread(
            lambda: service.decide(
                form.approval_id,
                reviewer,
                approve=form.verdict == "approve",
                comment=form.comment,
                wait_s=config.decision_wait_s,
            )
        )
        target = f"/approvals/{quote(form.approval_id, safe='/')}?sent={sent.event.event_id}"
        return RedirectResponse(target, status_code=303)

    return app


async def _in_thread(work: Any) -> Any:
    return await run_in_threadpool(work)


def _bundle(service: ApprovalsService, approval: Approval) -> tuple[EvidenceBundle | None, str]:
    try:
        return service.bundle(approval), ""
    except EvidenceError as exc:
        return None, str(exc)


async def _decision_form(request: Request, secret: bytes) -> DecisionForm:
    """Parse and validate the url-encoded form, and check its CSRF token against the session."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise BadForm(f"expected a url-encoded form, got {kind or 'no content type'}")
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise BadForm(f"the form has {len(body)} bytes; the limit is {MAX_FORM_BYTES}")
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=10)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadForm(f"the form cannot be read: {exc}") from None
    if any(len(values) != 1 for values in fields.values()):
        raise BadForm("each form field must appear exactly once")
    plain = {name: values[0] for name, values in fields.items()}
    session = request.cookies.get(SESSION_COOKIE, "")
    expected = csrf_token(secret, session) if session else ""
    # bytes: compare_digest raises TypeError on non-ASCII str, and a form may hold anything
    if not expected or not hmac.compare_digest(plain.get("csrf", "").encode(), expected.encode()):
        raise CsrfRejected(
            "the form's security token does not match this browser session; reload the "
            "approval page and submit again"
        )
    try:
        return DecisionForm.model_validate(plain)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'form'}: {e['msg']}" for e in exc.errors()
        )
        raise BadForm(problems) from None
