"""`sdlcflow policy ...`: test, eval and backtest Rego bundles."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from sdlcflow.errors import SdlcflowError
from sdlcflow.policy.backtest import (
    AuditInputSource,
    BacktestReport,
    JsonlInputSource,
    backtest,
    parse_since_ms,
)
from sdlcflow.policy.bundle import PolicyBundle
from sdlcflow.policy.decision import BundleDecision, Outcome
from sdlcflow.policy.engine import PolicyEngine
from sdlcflow.policy.inputs import PolicyInput
from sdlcflow.policy.modes import Mode, ModeChange, PolicyModes
from sdlcflow.policy.regotest import TestStatus, run_tests_isolated

SHIPPED_BUNDLE = Path(__file__).resolve().parent.parent / "policies"
EXIT_BY_OUTCOME = {Outcome.PASS: 0, Outcome.FAIL: 1, Outcome.REVIEW: 3}

_bundle_option = click.option(
    "--bundle",
    "bundle_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=SHIPPED_BUNDLE,
    show_default="the shipped bundle",
    envvar="SDLCFLOW_POLICY_BUNDLE",
    help="Policy bundle directory (.rego files + data.json). Env: SDLCFLOW_POLICY_BUNDLE.",
)
_json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


def _fail(exc: SdlcflowError) -> click.ClickException:
    return click.ClickException(str(exc))


@click.group()
def policy() -> None:
    """Evaluate, test and backtest Rego policy bundles."""


@policy.command("test")
@click.argument("bundle_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@_json_option
def test_command(bundle_dir: Path, as_json: bool) -> None:
    """Run the bundle's own Rego tests (every test_* rule must be true); exit 1 on failure."""
    try:
        results = run_tests_isolated(bundle_dir)
    except SdlcflowError as exc:
        raise _fail(exc) from None
    failed = [r for r in results if r.status is not TestStatus.PASSED]
    if as_json:
        click.echo(json.dumps([r.__dict__ for r in results], indent=2, default=str))
    else:
        for r in results:
            mark = "PASS" if r.status is TestStatus.PASSED else r.status.value.upper()
            click.echo(f"{mark:6} {r.name}" + (f"\n       {r.detail}" if r.detail else ""))
        click.echo(f"{len(results) - len(failed)}/{len(results)} passed")
    if failed or not results:
        raise SystemExit(1)


@policy.command("eval")
@click.option(
    "--input",
    "input_file",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="JSON file holding the policy input document (see sdlcflow.policy.inputs).",
)
@_bundle_option
@click.option("--audit", "audit", multiple=True, help="Evaluate this policy in audit mode.")
@_json_option
def eval_command(input_file: Path, bundle_dir: Path, audit: tuple[str, ...], as_json: bool) -> None:
    """Show the decision for one input with its evidence; exit 0 PASS, 1 FAIL, 3 REVIEW."""
    try:
        document = PolicyInput.model_validate_json(input_file.read_bytes())
        engine = PolicyEngine.load(bundle_dir)
    except ValidationError as exc:
        raise click.ClickException(f"{input_file} is not a policy input: {exc}") from None
    except SdlcflowError as exc:
        raise _fail(exc) from None
    modes = PolicyModes.from_changes(
        ModeChange(policy=p, mode=Mode.AUDIT, actor="cli", at_ms=0, reason="--audit") for p in audit
    )
    decision = engine.evaluate(document, modes)
    if as_json:
        click.echo(json.dumps(decision.model_dump(mode="json"), indent=2))
    else:
        _print_decision(decision)
    # SystemExit, not click's Exit: sdlcflow.cli.main runs click with standalone_mode=False,
    # which turns Exit into a return value that main() does not pass on.
    raise SystemExit(EXIT_BY_OUTCOME[decision.outcome])


def _print_decision(decision: BundleDecision) -> None:
    console = Console()
    table = Table(title=f"bundle {decision.bundle_digest[:19]}  input {decision.input_digest[:19]}")
    for column in ("policy", "mode", "outcome", "effective", "risk", "findings"):
        table.add_column(column)
    for result in decision.policies:
        findings = "\n".join(
            escape(f"[{f.kind.value}] {f.rule}: {f.message} ({', '.join(f.input_paths)})")
            for f in result.findings
        )
        table.add_row(
            result.policy,
            result.mode.value,
            result.outcome.value,
            result.effective.value,
            str(result.risk),
            findings or "-",
        )
    console.print(table)
    console.print(
        f"decision: [bold]{decision.outcome.value}[/bold] (enforce would be "
        f"{decision.enforced_outcome.value}), risk {decision.risk}, "
        f"approvals required {decision.required_approvals}"
    )


@policy.command("backtest")
@_bundle_option
@click.option(
    "--since",
    default=None,
    help="Only decisions recorded since: a window (7d, 12h, 30m) or an ISO time. Needed when "
    "reading the audit store.",
)
@click.option(
    "--inputs",
    "inputs_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help='JSONL of recorded decisions: {"input": ..., "decision": ..., "recorded_at": ms}. '
    "Without it, past policy results are read from the Cassandra audit store.",
)
@click.option(
    "--repo",
    "repos",
    multiple=True,
    help="Only decisions about this repository (glob; repeatable). Audit store only.",
)
@_json_option
def backtest_command(
    bundle_dir: Path,
    since: str | None,
    inputs_file: Path | None,
    repos: tuple[str, ...],
    as_json: bool,
) -> None:
    """Replay recorded inputs against a bundle; report newly blocked / newly passed."""
    now = int(time.time() * 1000)
    try:
        since_ms = None if since is None else parse_since_ms(since, now)
        engine = PolicyEngine.load(bundle_dir)
        if inputs_file is not None:
            report = backtest(JsonlInputSource(inputs_file).records(since_ms), engine)
        else:
            report = _backtest_audit_store(engine, since_ms, now, repos)
    except SdlcflowError as exc:
        raise _fail(exc) from None
    if as_json:
        click.echo(json.dumps(_report_json(report), indent=2))
    else:
        _print_report(report)


def _backtest_audit_store(
    engine: PolicyEngine, since_ms: int | None, now_ms: int, repos: tuple[str, ...]
) -> BacktestReport:
    """Backtest the policy results recorded in Cassandra between `since_ms` and now."""
    from sdlcflow.audit.queries import AuditReader
    from sdlcflow.audit.store import connect
    from sdlcflow.settings import Settings

    if since_ms is None:
        raise click.ClickException(
            "reading the audit store needs a window: pass --since 7d (or an ISO time), or "
            "pass --inputs FILE.jsonl"
        )
    settings = Settings.from_env()
    cluster, session = connect(settings)
    try:
        source = AuditInputSource(AuditReader(session, settings.keyspace), now_ms, repos)
        report = backtest(source.records(since_ms), engine)
    finally:
        cluster.shutdown()
    if source.skipped:
        click.echo(
            f"note: {source.skipped} policy result(s) in the window were recorded without "
            "their input (agents older than the evaluation field) and were left out",
            err=True,
        )
    return report


@policy.command("mode")
@click.argument("policy_name", metavar="POLICY")
@click.argument("mode", type=click.Choice([m.value for m in Mode]))
@click.option("--reason", required=True, help="Why the policy changes mode (recorded, required).")
@click.option("--repo", required=True, help="Repository whose log records the switch.")
@click.option(
    "--key",
    "key_file",
    required=True,
    envvar="SDLCFLOW_OPS_KEY",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Your ops private key file [env SDLCFLOW_OPS_KEY].",
)
@click.option(
    "--credential",
    required=True,
    envvar="SDLCFLOW_OPS_CREDENTIAL",
    help="Your ops credential: a file holding it or the token [env SDLCFLOW_OPS_CREDENTIAL].",
)
@click.option(
    "--bootstrap",
    envvar="SDLCFLOW_KAFKA_BOOTSTRAP",
    default="127.0.0.1:9092",
    show_default=True,
    help="Kafka bootstrap servers [env SDLCFLOW_KAFKA_BOOTSTRAP].",
)
@_json_option
def mode_command(
    policy_name: str,
    mode: str,
    reason: str,
    repo: str,
    key_file: Path,
    credential: str,
    bootstrap: str,
    as_json: bool,
) -> None:
    """Switch a policy (or `*`) between audit and enforce; signed, with who and why."""
    from sdlcflow.approvals.decisions import send_decision
    from sdlcflow.policy.rollout import Operator, mode_change_event
    from sdlcflow.streams.producer import EventPublisher

    try:
        operator = Operator.load(key_file, credential)
        event = mode_change_event(
            operator,
            policy=policy_name,
            mode=Mode(mode),
            reason=reason,
            repo=repo,
            now_ms=int(time.time() * 1000),
        )
        send_decision(EventPublisher(bootstrap), event)
    except SdlcflowError as exc:
        raise _fail(exc) from None
    if as_json:
        click.echo(
            json.dumps(
                {
                    "event_id": event.event_id,
                    "policy": policy_name,
                    "mode": mode,
                    "reason": reason.strip(),
                    "by": operator.claims.subject,
                }
            )
        )
    else:
        click.echo(f"{policy_name} -> {mode} by {operator.claims.subject}: {reason.strip()}")


def _report_json(report: BacktestReport) -> dict[str, Any]:
    return {
        "new_bundle": report.new_bundle,
        "old_bundles": list(report.old_bundles),
        "summary": report.summary(),
        "entries": [
            {
                "change_id": e.change_id,
                "input_digest": e.input_digest,
                "old": e.old.value,
                "new": e.new.value,
                "change": e.change.value,
                "added": list(e.added),
                "removed": list(e.removed),
            }
            for e in report.entries
        ],
    }


def _print_report(report: BacktestReport) -> None:
    console = Console()
    table = Table(title=f"backtest of {report.new_bundle[:19]}")
    for column in ("change", "old", "new", "verdict", "why"):
        table.add_column(column)
    for e in report.entries:
        why = "\n".join([*(f"+ {r}" for r in e.added), *(f"- {r}" for r in e.removed)])
        table.add_row(
            e.change_id or e.input_digest[:19], e.old, e.new, e.change, escape(why) or "-"
        )
    console.print(table)
    console.print(", ".join(f"{k}: {v}" for k, v in report.summary().items()))


__all__ = ["PolicyBundle", "policy"]
