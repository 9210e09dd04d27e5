"""Run a bundle's own Rego tests: every `test_*` rule in `*_test.rego` files must be true.

rego-cpp can crash the whole process on some constructs, so the command line runs the tests
in a child process; if the child dies, each test is rerun alone to name the one that crashes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path

import click

from sdlcflow.policy import _rego
from sdlcflow.policy.bundle import PolicyBundle


class TestStatus(StrEnum):
    __test__ = False

    PASSED = "passed"
    FAILED = "failed"
    ERROR = "error"


@dataclass(frozen=True)
class RegoTestResult:
    """The outcome of one `test_*` rule: `name` is `package.rule`."""

    __test__ = False

    name: str
    file: str
    status: TestStatus
    detail: str = ""


def run_tests(bundle: PolicyBundle, only: str | None = None) -> list[RegoTestResult]:
    """Evaluate every test rule in-process (or just `only`); true passes, anything else fails."""
    interpreter = _rego.new_interpreter()
    for module in bundle.modules:
        _rego.add_module(interpreter, module.path, module.source)
    interpreter.add_data_json(json.dumps(dict(bundle.data)))
    _rego.set_input(interpreter, b"{}")
    results = []
    for module in bundle.test_modules:
        for rule in module.test_rules:
            name = f"{module.package}.{rule}"
            if only is None or only == name:
                results.append(_run_one(interpreter, module.path, name))
    return results


def _run_one(interpreter: object, file: str, name: str) -> RegoTestResult:
    try:
        value = _rego.query(interpreter, f"x = data.{name}")  # type: ignore[arg-type]
    except _rego.RegoFailure as exc:
        return RegoTestResult(name, file, TestStatus.ERROR, str(exc))
    if value is True:
        return RegoTestResult(name, file, TestStatus.PASSED)
    shown = "undefined" if value is _rego.UNDEFINED else json.dumps(value)
    return RegoTestResult(name, file, TestStatus.FAILED, f"evaluated to {shown}, expected true")


def run_tests_isolated(root: Path, timeout_s: float = 120.0) -> list[RegoTestResult]:
    """Run the tests in a child process; on a crash, rerun them one by one to find the culprit."""
    bundle = PolicyBundle.load(root)
    names = [(m.path, f"{m.package}.{rule}") for m in bundle.test_modules for rule in m.test_rules]
    results = _child(root, None, timeout_s)
    if results is not None:
        return results
    found: list[RegoTestResult] = []
    for file, name in names:
        single = _child(root, name, timeout_s)
        crashed = RegoTestResult(name, file, TestStatus.ERROR, "rego-cpp crashed evaluating it")
        found.extend(single if single is not None else [crashed])
    return found


def _child(root: Path, only: str | None, timeout_s: float) -> list[RegoTestResult] | None:
    command = [sys.executable, "-m", "sdlcflow.policy.regotest", str(root)]
    if only:
        command += ["--only", only]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False)
    if done.returncode != 0:
        return None
    rows = json.loads(done.stdout)
    return [
        RegoTestResult(r["name"], r["file"], TestStatus(r["status"]), r["detail"]) for r in rows
    ]


@click.command()
@click.argument("root", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--only", default=None, help="Run just this test (package.rule).")
def _main(root: Path, only: str | None) -> None:
    """Child-process entry: print the results as JSON."""
    click.echo(json.dumps([asdict(r) for r in run_tests(PolicyBundle.load(root), only)]))


if __name__ == "__main__":
    _main()
