"""Templates parse into validated, deterministic DAGs; bad templates name file, step, problem."""

from __future__ import annotations

import pytest

from sdlcflow.core.codec import canonical_json
from sdlcflow.core.events import ArtifactRef, Authority, ChangeFacts
from sdlcflow.core.planner import (
    TemplateError,
    load_templates,
    packaged_template_texts,
    parse_template,
    plan,
)

FACTS = ChangeFacts("code", ("src/app.py",), ("ui",), ("APP_URL",), ("prod",))
INPUTS = (ArtifactRef("base", "b0"), ArtifactRef("head", "h1"), ArtifactRef("lockfile", "l1"))


class TestPackagedTemplates:
    """The shipped templates load and have the promised shapes."""

    def test_all_three_templates_load(self) -> None:
        templates = load_templates(packaged_template_texts())
        assert {"code-change", "dependency-upgrade", "deployment"} <= set(templates)

    def test_code_change_gates_merge_and_promote_behind_policy_and_optional_approval(self) -> None:
        template = load_templates(packaged_template_texts())["code-change"]
        steps = {step.id: step for step in template.steps}
        assert [s.id for s in template.steps] == [
            "lint",
            "test",
            "policy",
            "approval",
            "merge",
            "promote",
        ]
        assert steps["approval"].when == 'steps.policy.decision == "REVIEW"'
        assert steps["approval"].authority is Authority.HUMAN
        assert steps["merge"].gate and steps["promote"].gate

    def test_deployment_goes_to_staging_before_prod_after_approval(self) -> None:
        template = load_templates(packaged_template_texts())["deployment"]
        steps = {step.id: step for step in template.steps}
        assert steps["prod"].needs == ("approval",)
        assert steps["approval"].approvals_required == 2
        assert steps["staging"].outputs.environments == ("staging",)


class TestPlanning:
    """Binding a template to a change is deterministic and concrete."""

    def test_same_input_gives_byte_identical_plan(self) -> None:
        template = load_templates(packaged_template_texts())["code-change"]
        first = canonical_json(plan(template, "c1", FACTS, INPUTS))
        again = load_templates(packaged_template_texts())["code-change"]
        assert canonical_json(plan(again, "c1", FACTS, INPUTS)) == first

    def test_change_token_expands_to_the_changes_own_outputs(self) -> None:
        template = load_templates(packaged_template_texts())["code-change"]
        contracts = {c.step: c for c in plan(template, "c1", FACTS, INPUTS)}
        assert contracts["merge"].outputs.paths == ("src/app.py",)
        assert contracts["merge"].outputs.resources == ("APP_URL",)
        assert contracts["promote"].outputs.environments == ("prod",)
        assert contracts["policy"].needs == ("c1/lint", "c1/test")
        assert contracts["lint"].inputs == INPUTS

    def test_steps_are_ordered_topologically_with_file_order_for_ties(self) -> None:
        text = """
name: t
steps:
  - {id: b, capability: test, needs: [a]}
  - {id: a, capability: lint}
  - {id: c, capability: lint}
"""
        assert [s.id for s in parse_template(text, "t.yaml").steps] == ["a", "b", "c"]


def _problem(text: str) -> str:
    with pytest.raises(TemplateError) as info:
        parse_template(text, "pipelines/bad.yaml")
    return str(info.value)


class TestTemplateValidation:
    """Each invalid template is refused with the file, the step and what to fix."""

    def test_unknown_capability(self) -> None:
        message = _problem("name: t\nsteps:\n  - {id: x, capability: teleport}\n")
        assert "pipelines/bad.yaml: step 'x': unknown capability 'teleport'" in message
        assert "known: " in message

    def test_cycle(self) -> None:
        message = _problem(
            "name: t\nsteps:\n  - {id: a, capability: lint, needs: [b]}\n"
            "  - {id: b, capability: lint, needs: [a]}\n"
        )
        assert "dependency cycle a -> b -> a" in message

    def test_missing_dependency(self) -> None:
        message = _problem("name: t\nsteps:\n  - {id: a, capability: lint, needs: [ghost]}\n")
        assert "step 'a': needs unknown step 'ghost'" in message

    def test_bad_expression(self) -> None:
        message = _problem("name: t\nsteps:\n  - {id: a, capability: lint, when: 'open(1)'}\n")
        assert "step 'a': bad 'when' expression" in message

    def test_duplicate_id(self) -> None:
        message = _problem(
            "name: t\nsteps:\n  - {id: a, capability: lint}\n  - {id: a, capability: test}\n"
        )
        assert "step 'a': duplicate id" in message

    def test_condition_on_a_step_that_is_not_a_dependency(self) -> None:
        message = _problem(
            "name: t\nsteps:\n  - {id: a, capability: lint}\n"
            "  - {id: b, capability: test, when: 'steps.a.status == \"succeeded\"'}\n"
        )
        assert (
            "step 'b': 'when' reads steps.a, which is not among its (transitive) needs" in message
        )

    def test_bad_fields_are_all_listed_at_once(self) -> None:
        message = _problem(
            "name: t\nsteps:\n  - {id: a, capability: lint, timeout: soon, max_attempts: 0,"
            " authority: robot, colour: red}\n"
        )
        assert "'timeout' must be a positive duration" in message
        assert "'max_attempts' must be an integer >= 1" in message
        assert "'authority' is 'robot'; use one of agent, human, ops" in message
        assert "unknown key(s) colour" in message

    def test_not_yaml(self) -> None:
        assert "pipelines/bad.yaml: not valid YAML" in _problem("name: [unclosed\n")

    def test_template_name_must_match_file_name(self) -> None:
        with pytest.raises(TemplateError, match="must match its file name"):
            load_templates({"x": ("x.yaml", "name: y\nsteps:\n  - {id: a, capability: lint}\n")})


class TestEscalationGroups:
    """`escalate_to` names an approval step's second reviewer group without moving digests."""

    APPROVAL = """
name: t
steps:
  - {id: policy, capability: policy}
  - id: approval
    capability: approval
    authority: human
    approvals: 1
    needs: [policy]
"""

    def test_the_group_reaches_the_approval_contract(self) -> None:
        template = parse_template(self.APPROVAL + "    escalate_to: leads\n", "t.yaml")
        contract = {c.step: c for c in plan(template, "c1", FACTS, INPUTS)}["approval"]
        assert contract.escalate_to == "leads"

    def test_the_group_is_part_of_the_digest_and_the_source_is_not(self) -> None:
        without = parse_template(self.APPROVAL, "t.yaml")
        with_group = parse_template(self.APPROVAL + "    escalate_to: leads\n", "t.yaml")
        assert without.digest != with_group.digest
        assert parse_template(self.APPROVAL, "other.yaml").digest == without.digest

    def test_bad_group_names_and_non_approval_steps_are_refused(self) -> None:
        bad = self.APPROVAL + "    escalate_to: 'Leads Team'\n"
        with pytest.raises(TemplateError, match="'escalate_to' must be a group name"):
            parse_template(bad, "t.yaml")
        lint = "name: t\nsteps:\n  - {id: lint, capability: lint, escalate_to: leads}\n"
        with pytest.raises(TemplateError, match="applies to approval steps"):
            parse_template(lint, "t.yaml")

    def test_the_deployment_template_escalates_to_release_managers(self) -> None:
        templates = load_templates(packaged_template_texts())
        approval = {s.id: s for s in templates["deployment"].steps}["approval"]
        assert approval.escalate_to == "release-managers"
