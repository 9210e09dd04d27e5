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
    BacktestReport,
    JsonlInputSource,
    backtest,
    parse_duration_ms,
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
@click.option("--since", default=None, help="Only inputs recorded in this window: 7d, 12h, 30m.")
@click.option(
    "--inputs",
    "inputs_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help='JSONL of recorded decisions: {"input": ..., "decision": ..., "recorded_at": ms}.',
)
@_json_option
def backtest_command(
    bundle_dir: Path, since: str | None, inputs_file: Path | None, as_json: bool
) -> None:
    """Replay recorded inputs against a bundle; report newly blocked / newly passed."""
    if inputs_file is None:
        raise click.ClickException(
            "reading recorded inputs from the audit store is not wired yet; export them and "
            "pass --inputs FILE.jsonl"
        )
    try:
        since_ms = None if since is None else int(time.time() * 1000) - parse_duration_ms(since)
        engine = PolicyEngine.load(bundle_dir)
        report = backtest(JsonlInputSource(inputs_file).records(since_ms), engine)
    except SdlcflowError as exc:
        raise _fail(exc) from None
    if as_json:
        click.echo(json.dumps(_report_json(report), indent=2))
    else:
        _print_report(report)


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
