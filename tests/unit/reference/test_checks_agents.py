import json
import xml.etree.ElementTree as ET

from sdlcflow.agents.reference import LintInput, SuiteInput, Workspace, lint, run_suite
from sdlcflow.gitops.sample import SampleRepo

_FAILING_TEST = b"def test_login_is_broken() -> None:\n    assert 1 + 1 == 3\n"


class TestLintAgent:
    """ruff runs on a fresh checkout of the SHA; the report is an artifact bound to that SHA."""

    def test_the_sample_service_is_lint_clean(
        self, sample: SampleRepo, workspace: Workspace
    ) -> None:
        result = lint(LintInput(sample.remote, sample.main), workspace)
        assert result.passed and result.findings == 0 and result.sha == sample.main
        report = json.loads(workspace.store.get(result.report))
        assert report == {"sha": sample.main, "tool": "ruff", "findings": []}

    def test_findings_are_reported_with_relative_paths(
        self, sample: SampleRepo, workspace: Workspace
    ) -> None:
        head = sample.commit(sample.main, "sloppy", {"service/sloppy.py": b"import os\n"})
        result = lint(LintInput(sample.remote, head), workspace)
        assert not result.passed and result.findings == 1
        (finding,) = json.loads(workspace.store.get(result.report))["findings"]
        assert (finding["path"], finding["code"], finding["line"]) == (
            "service/sloppy.py",
            "F401",
            1,
        )

    def test_linting_twice_gives_the_same_outputs(
        self, sample: SampleRepo, workspace: Workspace
    ) -> None:
        head = sample.commit(sample.main, "sloppy", {"service/sloppy.py": b"import os\n"})
        request = LintInput(sample.remote, head)
        assert lint(request, workspace).outputs() == lint(request, workspace).outputs()


class TestSuiteAgent:
    """pytest runs on a fresh checkout; the JUnit XML artifact and counts are bound to the SHA."""

    def test_the_sample_suite_passes_with_a_junit_artifact(
        self, sample: SampleRepo, workspace: Workspace
    ) -> None:
        result = run_suite(SuiteInput(sample.remote, sample.main), workspace)
        assert result.passed and result.sha == sample.main
        assert (result.tests, result.failures, result.errors) == (5, 0, 0)
        junit = ET.fromstring(workspace.store.get(result.junit))
        assert len(list(junit.iter("testcase"))) == 5
        assert all("time" not in e.attrib and "timestamp" not in e.attrib for e in junit.iter())

    def test_a_failing_test_is_counted_and_fails_the_suite(
        self, sample: SampleRepo, workspace: Workspace
    ) -> None:
        head = sample.commit(sample.main, "broken", {"tests/test_broken.py": _FAILING_TEST})
        result = run_suite(SuiteInput(sample.remote, head), workspace)
        assert not result.passed
        assert (result.tests, result.failures) == (6, 1)
        assert b"test_login_is_broken" in workspace.store.get(result.junit)

    def test_running_twice_gives_the_same_outputs(
        self, sample: SampleRepo, workspace: Workspace
    ) -> None:
        head = sample.commit(sample.main, "broken", {"tests/test_broken.py": _FAILING_TEST})
        request = SuiteInput(sample.remote, head)
        assert run_suite(request, workspace).outputs() == run_suite(request, workspace).outputs()

    def test_the_checkout_path_does_not_leak_into_the_report(
        self, sample: SampleRepo, workspace: Workspace
    ) -> None:
        head = sample.commit(sample.main, "broken", {"tests/test_broken.py": _FAILING_TEST})
        result = run_suite(SuiteInput(sample.remote, head), workspace)
        assert b"sdlcflow-checkout-" not in workspace.store.get(result.junit)


class TestScratchHygiene:
    """Checkouts, sandbox homes and report files are removed once the work is done."""

    def test_nothing_is_left_in_the_scratch_space(
        self, sample: SampleRepo, workspace: Workspace
    ) -> None:
        run_suite(SuiteInput(sample.remote, sample.main), workspace)
        lint(LintInput(sample.remote, sample.main), workspace)
        assert [p for p in workspace.scratch.rglob("*") if not p.is_dir()] == []
        assert [p.name for p in workspace.scratch.iterdir()] == ["sandbox"]
