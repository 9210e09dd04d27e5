"""The Prometheus rule files parse, pass promtool, and name only metrics sdlcflow exports."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from sdlcflow.observability.metrics import metric_names

RULES_DIR = Path(__file__).resolve().parents[3] / "infra" / "prometheus"
RULE_FILES = ("recording.yml", "alerts.yml")
# series Prometheus itself provides
BUILTIN_SERIES = frozenset({"up"})
PROMQL_WORDS = frozenset(
    {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
     "bool", "offset", "le", "inf", "nan"}
)  # fmt: skip
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"')
_MATCHERS = re.compile(r"\{[^}]*\}")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring)\s*\([^)]*\)")
_RANGES = re.compile(r"\[[^\]]*\]")
_NAME = re.compile(r"(?<![\w:.])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w:])(?!\s*\()")


def _rules() -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    for name in RULE_FILES:
        document = yaml.safe_load((RULES_DIR / name).read_text())
        for group in document["groups"]:
            rules.extend(group["rules"])
    return rules


def series_in(expr: str) -> set[str]:
    """Metric and recorded-series names an expression reads (not functions, labels, keywords)."""
    text = _STRINGS.sub("", expr)
    text = _MATCHERS.sub("", text)
    text = _GROUPING.sub("", text)
    text = _RANGES.sub("", text)
    return {
        name
        for name in _NAME.findall(text)
        if name.lower() not in PROMQL_WORDS and not re.fullmatch(r"\d.*|e\d+", name)
    }


class TestSeriesExtraction:
    """The checker finds metric names and ignores functions, labels and keywords."""

    def test_names_are_found_and_the_rest_ignored(self) -> None:
        expr = (
            'histogram_quantile(0.99, sum by (le) (rate(sdlcflow_x_bucket{outcome="a b"}[5m])))'
            " / clamp_min(sdlcflow:y:rate5m, 1e-9) > 0.5 and up == 0"
        )
        assert series_in(expr) == {"sdlcflow_x_bucket", "sdlcflow:y:rate5m", "up"}


class TestRuleFiles:
    """Every rule is well formed and reads only series that exist."""

    def test_every_rule_records_or_alerts_with_an_expression(self) -> None:
        rules = _rules()
        assert len(rules) >= 10
        for rule in rules:
            assert ("record" in rule) != ("alert" in rule), rule
            assert rule["expr"].strip()
            if "alert" in rule:
                assert rule["labels"]["severity"] in {"info", "warning", "critical"}
                assert rule["annotations"]["summary"]

    def test_every_series_named_is_exported_or_recorded(self) -> None:
        rules = _rules()
        recorded = {rule["record"] for rule in rules if "record" in rule}
        known = metric_names() | recorded | BUILTIN_SERIES
        unknown = {
            (rule.get("alert") or rule.get("record"), name)
            for rule in rules
            for name in series_in(rule["expr"])
            if name not in known
        }
        assert unknown == set()

    def test_the_slo_alerts_the_design_asks_for_exist(self) -> None:
        alerts = {rule["alert"] for rule in _rules() if "alert" in rule}
        for wanted in (
            "SdlcflowTaskLatencyP50High",
            "SdlcflowTaskLatencyP95High",
            "SdlcflowTaskLatencyP99High",
            "SdlcflowDeadLetterGrowing",
            "SdlcflowPolicyFailureSpike",
            "SdlcflowConsumerLagHigh",
        ):
            assert wanted in alerts

    def test_promtool_accepts_the_rules_and_their_unit_tests(self) -> None:
        promtool = shutil.which("promtool")
        assert promtool, "promtool not found: `make sysdeps` installs Debian's prometheus"
        files = [str(RULES_DIR / name) for name in RULE_FILES]
        checked = subprocess.run(
            [promtool, "check", "rules", *files], capture_output=True, text=True, check=False
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
        tested = subprocess.run(
            [promtool, "test", "rules", "rules_test.yml"],
            cwd=RULES_DIR,
            capture_output=True,
            text=True,
            check=False,
        )
        assert tested.returncode == 0, tested.stdout + tested.stderr
