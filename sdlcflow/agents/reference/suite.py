"""The test agent: pytest on a fresh checkout of one SHA, results as a JUnit XML artifact.

The stored JUnit report drops what changes between identical runs (durations, timestamps,
host name, the temp checkout's path), so running the suite twice on one SHA yields one digest.
"""

from __future__ import annotations

import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from sdlcflow.agents.reference._workspace import AgentWorkError, Workspace, python_executable
from sdlcflow.gitops import checkout, resolve

_VOLATILE = ("time", "timestamp", "hostname")


@dataclass(frozen=True)
class SuiteInput:
    remote: Path
    sha: str
    args: tuple[str, ...] = ()  # extra pytest arguments, e.g. ("-k", "auth")
    timeout_s: float | None = None


@dataclass(frozen=True)
class SuiteResult:
    """What pytest found at `sha`; `junit` is the digest of the normalized JUnit XML."""

    sha: str
    passed: bool
    tests: int
    failures: int
    errors: int
    skipped: int
    junit: str

    def outputs(self) -> dict[str, str]:
        return {
            "sha": self.sha,
            "passed": str(self.passed).lower(),
            "tests": str(self.tests),
            "failures": str(self.failures),
            "errors": str(self.errors),
            "skipped": str(self.skipped),
            "junit": self.junit,
        }


def run_suite(request: SuiteInput, workspace: Workspace) -> SuiteResult:
    """Run the repository's tests at `request.sha`; passed means ran >= 1 test, none failed."""
    sha = resolve(request.remote, request.sha)
    with (
        tempfile.TemporaryDirectory(prefix="junit-", dir=workspace.scratch) as reports,
        checkout(request.remote, sha, parent=workspace.scratch) as tree,
    ):
        junit_path = Path(reports) / "junit.xml"
        ran = workspace.run(
            [
                python_executable(),
                "-m",
                "pytest",
                "-p",
                "no:cacheprovider",  # leave the checkout as the commit made it
                "-q",
                f"--junitxml={junit_path}",
                "-o",
                "junit_family=xunit2",
                *request.args,
            ],
            cwd=tree.path,
            timeout_s=request.timeout_s,
            writable=[Path(reports)],
        )
        if not junit_path.exists():
            raise AgentWorkError(
                f"pytest wrote no report for {sha} (exit {ran.exit_code}, timed out: "
                f"{ran.timed_out}); its output is artifacts {ran.stdout_digest} and "
                f"{ran.stderr_digest}"
            )
        xml = normalize_junit(junit_path.read_bytes(), tree.path)
    counts = _counts(xml)
    passed = ran.exit_code == 0 and not ran.timed_out and counts["tests"] > 0
    return SuiteResult(sha=sha, passed=passed, junit=workspace.store.put(xml), **counts)


def normalize_junit(raw: bytes, checkout_root: Path) -> bytes:
    """The JUnit XML without the fields that vary between identical runs."""
    text = (
        raw.decode("utf-8").replace(str(checkout_root) + "/", "").replace(str(checkout_root), ".")
    )
    root = ET.fromstring(text)
    for element in root.iter():
        for name in _VOLATILE:
            element.attrib.pop(name, None)
    serialized: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return serialized + b"\n"


def _counts(xml: bytes) -> dict[str, int]:
    root = ET.fromstring(xml)
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for suite in suites:
        for key in totals:
            totals[key] += int(suite.attrib.get(key, "0"))
    return totals
