"""The planner: pipeline templates (YAML text) and change facts -> a DAG of task contracts.

Parsing takes text and a source name and never opens files, so the shell decides where
templates come from (the packaged ones, a repository's own). The same template and change
always give the same contracts, byte for byte (`canonical_json`), which keeps replay exact.

A template:

    name: code-change
    steps:
      - id: policy
        capability: policy
        needs: [lint, test]
      - id: approval
        capability: approval
        authority: human
        approvals: 1
        needs: [policy]
        when: steps.policy.decision == "REVIEW"

Step keys: id, capability, needs, when, timeout (ms or "30s"/"10m"/"1h"), authority
(agent/human/ops), approvals, max_attempts, backoff {base, max, jitter}, compensation,
outputs {paths, resources, environments} (the token `$change` expands to the change's own
paths/resources/environments), preconditions, gate (a promotion step), required,
escalate_to (an approval step's second reviewer group, asked once `timeout` passes unapproved;
a second timeout blocks the change).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml

from sdlcflow.core.codec import canonical_json, to_plain
from sdlcflow.core.events import (
    ArtifactRef,
    Authority,
    Backoff,
    ChangeFacts,
    Outputs,
    TaskContract,
)
from sdlcflow.core.expr import ExpressionError, compile_condition, step_references
from sdlcflow.errors import SdlcflowError

KNOWN_CAPABILITIES: frozenset[str] = frozenset(
    {
        "lint",
        "test",
        "build",
        "policy",
        "approval",
        "merge",
        "deploy",
        "dependency-update",
        "refactor",
        "promote",
        "security-scan",
    }
)

CHANGE_TOKEN = "$change"

_STEP_KEYS = frozenset(
    {
        "id",
        "capability",
        "needs",
        "when",
        "timeout",
        "authority",
        "approvals",
        "max_attempts",
        "backoff",
        "compensation",
        "outputs",
        "preconditions",
        "gate",
        "required",
        "escalate_to",
        "description",
    }
)
_DURATION = re.compile(r"^\s*(\d+)\s*(ms|s|m|h|d)?\s*\Z")
_UNITS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, None: 1}
_STEP_ID = re.compile(r"^[a-z][a-z0-9_-]{0,62}\Z")


class TemplateError(SdlcflowError):
    """A pipeline template is invalid; the message names the source, the step and the problem."""


@dataclass(frozen=True)
class StepSpec:
    """One step of a template before it is bound to a change."""

    id: str
    capability: str
    needs: tuple[str, ...]
    when: str
    timeout_ms: int
    authority: Authority
    approvals_required: int
    max_attempts: int
    backoff: Backoff
    compensation: str | None
    outputs: Outputs
    preconditions: tuple[str, ...]
    gate: bool
    required: bool
    escalate_to: str = ""


# Optional step fields added after the first release: left at their default they stay out of
# a template's digest, so templates that do not use them keep the digest they always had.
_DIGEST_OPTIONAL = {"escalate_to": ""}


@dataclass(frozen=True)
class Template:
    """A validated pipeline template; steps are in topological order, ties kept in file order."""

    name: str
    source: str
    description: str
    steps: tuple[StepSpec, ...]
    # sha256 of the canonical form: two templates with equal digests plan identically. A field
    # computed once, not a cached property: compiled by mypyc, a cached property is computed
    # at every read (8% of the compiled core's time went to it)
    digest: str


def _template_digest(name: str, steps: tuple[StepSpec, ...]) -> str:
    plain = [
        {k: v for k, v in step.items() if k not in _DIGEST_OPTIONAL or v != _DIGEST_OPTIONAL[k]}
        for step in to_plain(steps)
    ]
    return hashlib.sha256(canonical_json({"name": name, "steps": plain})).hexdigest()


DEFAULT_TIMEOUT_MS = 10 * 60_000
DEFAULT_BACKOFF = Backoff(base_ms=1_000, max_ms=60_000, jitter=0.2)


def parse_template(
    text: str, source: str, capabilities: Iterable[str] = KNOWN_CAPABILITIES
) -> Template:
    """Parse and validate one template; every problem found is listed in one TemplateError."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise TemplateError(f"{source}: not valid YAML: {exc}") from exc
    if not isinstance(document, Mapping):
        raise TemplateError(f"{source}: expected a mapping with 'name' and 'steps' at the top")
    problems: list[str] = []
    name = document.get("name")
    if not isinstance(name, str) or not name:
        problems.append(f"{source}: 'name' must be a non-empty string")
        name = source
    raw_steps = document.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        raise TemplateError(f"{source}: 'steps' must be a non-empty list of steps")
    known = frozenset(capabilities)
    steps = [
        _parse_step(raw, index, source, known, problems) for index, raw in enumerate(raw_steps)
    ]
    parsed = [step for step in steps if step is not None]
    _check_graph(parsed, source, problems)
    if problems:
        raise TemplateError("\n".join(problems))
    description = document.get("description", "")
    ordered = _topological(parsed)
    return Template(
        name=name,
        source=source,
        description=description if isinstance(description, str) else "",
        steps=ordered,
        digest=_template_digest(name, ordered),
    )


def _parse_step(
    raw: Any, index: int, source: str, known: frozenset[str], problems: list[str]
) -> StepSpec | None:
    if not isinstance(raw, Mapping):
        problems.append(f"{source}: step #{index + 1}: expected a mapping, got {raw!r}")
        return None
    step_id = raw.get("id")
    where = f"{source}: step {step_id!r}" if step_id else f"{source}: step #{index + 1}"
    before = len(problems)
    if not isinstance(step_id, str) or not _STEP_ID.match(step_id):
        problems.append(f"{where}: 'id' must match {_STEP_ID.pattern}")
    unknown_keys = sorted(set(raw) - _STEP_KEYS)
    if unknown_keys:
        problems.append(
            f"{where}: unknown key(s) {', '.join(map(str, unknown_keys))}; "
            f"allowed: {', '.join(sorted(_STEP_KEYS))}"
        )
    capability = raw.get("capability")
    if capability not in known:
        problems.append(
            f"{where}: unknown capability {capability!r}; known: {', '.join(sorted(known))}"
        )
    when = raw.get("when", "")
    when = "" if when is None else str(when)
    try:
        compile_condition(when)
    except ExpressionError as exc:
        problems.append(f"{where}: bad 'when' expression: {exc}")
    authority = _enum(raw.get("authority", "agent"), Authority, where, "authority", problems)
    step = StepSpec(
        id=str(step_id),
        capability=str(capability),
        needs=_strings(raw.get("needs", ()), where, "needs", problems),
        when=when,
        timeout_ms=_duration(raw.get("timeout", DEFAULT_TIMEOUT_MS), where, "timeout", problems),
        authority=authority or Authority.AGENT,
        approvals_required=_count(raw.get("approvals", 0), where, "approvals", problems, 0),
        max_attempts=_count(raw.get("max_attempts", 3), where, "max_attempts", problems, 1),
        backoff=_backoff(raw.get("backoff"), where, problems),
        compensation=_optional_string(raw.get("compensation"), where, problems),
        outputs=_outputs(raw.get("outputs"), where, problems),
        preconditions=_strings(raw.get("preconditions", ()), where, "preconditions", problems),
        gate=bool(raw.get("gate", False)),
        required=bool(raw.get("required", True)),
        escalate_to=_group(raw.get("escalate_to", ""), where, problems),
    )
    if (
        step.authority is Authority.HUMAN
        and step.capability == "approval"
        and step.approvals_required < 1
    ):
        problems.append(f"{where}: a human approval step needs 'approvals' >= 1")
    if step.escalate_to and step.approvals_required < 1:
        problems.append(f"{where}: 'escalate_to' applies to approval steps ('approvals' >= 1)")
    return step if isinstance(step_id, str) or len(problems) == before else None


_GROUP = re.compile(r"^[a-z][a-z0-9_.-]{0,62}\Z")


def _group(raw: Any, where: str, problems: list[str]) -> str:
    """A reviewer group name (it becomes the credential capability `approval:<group>`)."""
    if raw in ("", None):
        return ""
    if not isinstance(raw, str) or not _GROUP.match(raw):
        problems.append(f"{where}: 'escalate_to' must be a group name matching {_GROUP.pattern}")
        return ""
    return raw


def _check_graph(steps: list[StepSpec], source: str, problems: list[str]) -> None:
    ids: dict[str, StepSpec] = {}
    for step in steps:
        if step.id in ids:
            problems.append(f"{source}: step {step.id!r}: duplicate id")
        ids[step.id] = step
    for step in steps:
        for need in step.needs:
            if need not in ids:
                problems.append(f"{source}: step {step.id!r}: needs unknown step {need!r}")
    cycle = _find_cycle(ids)
    if cycle:
        problems.append(f"{source}: step {cycle[0]!r}: dependency cycle {' -> '.join(cycle)}")
        return
    for step in steps:
        ancestors = _ancestors(step.id, ids)
        try:
            references = step_references(step.when)
        except ExpressionError:
            continue  # already reported by _parse_step
        for ref in references:
            if ref not in ancestors:
                problems.append(
                    f"{source}: step {step.id!r}: 'when' reads steps.{ref}, which is not among "
                    "its (transitive) needs; add it to 'needs'"
                )


def _find_cycle(ids: Mapping[str, StepSpec]) -> list[str]:
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for need in ids[node].needs:
            if need not in ids:
                continue
            if state.get(need) == 1:
                return [*path[path.index(need) :], need]
            if need not in state:
                found = visit(need)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return []

    for node in ids:
        if node not in state:
            found = visit(node)
            if found:
                return found
    return []


def _ancestors(step_id: str, ids: Mapping[str, StepSpec]) -> set[str]:
    seen: set[str] = set()
    stack = list(ids[step_id].needs)
    while stack:
        node = stack.pop()
        if node in seen or node not in ids:
            continue
        seen.add(node)
        stack.extend(ids[node].needs)
    return seen


def _topological(steps: list[StepSpec]) -> tuple[StepSpec, ...]:
    """Kahn's order with ties broken by position in the file, so the order is deterministic."""
    done: set[str] = set()
    ordered: list[StepSpec] = []
    remaining = list(steps)
    while remaining:
        for step in remaining:
            if all(need in done for need in step.needs):
                ordered.append(step)
                done.add(step.id)
                remaining.remove(step)
                break
    return tuple(ordered)


def plan(
    template: Template,
    change_id: str,
    facts: ChangeFacts,
    inputs: tuple[ArtifactRef, ...],
) -> tuple[TaskContract, ...]:
    """Bind a template to one change: task ids, inputs and declared outputs become concrete."""
    return tuple(_contract(step, change_id, facts, inputs) for step in template.steps)


def task_id(change_id: str, step_id: str) -> str:
    """Task ids are `<change>/<step>`: unique per repository, readable in logs."""
    return f"{change_id}/{step_id}"


def _contract(
    step: StepSpec, change_id: str, facts: ChangeFacts, inputs: tuple[ArtifactRef, ...]
) -> TaskContract:
    return TaskContract(
        id=task_id(change_id, step.id),
        step=step.id,
        capability=step.capability,
        needs=tuple(task_id(change_id, need) for need in step.needs),
        inputs=inputs,
        outputs=Outputs(
            paths=_expand(step.outputs.paths, facts.paths),
            resources=_expand(step.outputs.resources, facts.resources),
            environments=_expand(step.outputs.environments, facts.environments),
        ),
        preconditions=step.preconditions,
        when=step.when,
        timeout_ms=step.timeout_ms,
        authority=step.authority,
        approvals_required=step.approvals_required,
        max_attempts=step.max_attempts,
        backoff=step.backoff,
        compensation=step.compensation,
        gate=step.gate,
        required=step.required,
        escalate_to=step.escalate_to,
    )


def _expand(declared: tuple[str, ...], own: tuple[str, ...]) -> tuple[str, ...]:
    out: list[str] = []
    for item in declared:
        for value in own if item == CHANGE_TOKEN else (item,):
            if value not in out:
                out.append(value)
    return tuple(out)


def packaged_template_texts() -> dict[str, tuple[str, str]]:
    """The templates shipped in `sdlcflow/templates` as name -> (source, text).

    This reads package data (the one I/O function here, kept apart from parsing); the shell
    calls it once at start-up and hands parsed templates to the core.
    """
    found: dict[str, tuple[str, str]] = {}
    folder = resources.files("sdlcflow") / "templates"
    for entry in sorted(folder.iterdir(), key=lambda item: item.name):
        if entry.name.endswith(".yaml"):
            found[entry.name.removesuffix(".yaml")] = (
                f"sdlcflow/templates/{entry.name}",
                entry.read_text(encoding="utf-8"),
            )
    return found


def load_templates(texts: Mapping[str, tuple[str, str]]) -> dict[str, Template]:
    """Parse many templates keyed by name; a template's `name` must match its key."""
    templates: dict[str, Template] = {}
    for key, (source, text) in sorted(texts.items()):
        template = parse_template(text, source)
        if template.name != key:
            raise TemplateError(
                f"{source}: template name {template.name!r} must match its file name {key!r}"
            )
        templates[key] = template
    return templates


# --------------------------------------------------------------------------------------------
# field parsers: each appends a problem and returns a safe default instead of raising


def _strings(value: Any, where: str, key: str, problems: list[str]) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return tuple(value)
    problems.append(f"{where}: {key!r} must be a string or a list of strings")
    return ()


def _optional_string(value: Any, where: str, problems: list[str]) -> str | None:
    if value is None or isinstance(value, str):
        return value
    problems.append(f"{where}: 'compensation' must be a string naming the undo action")
    return None


def _duration(value: Any, where: str, key: str, problems: list[str]) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    match = _DURATION.match(str(value)) if isinstance(value, str) else None
    if match and int(match.group(1)) > 0:
        return int(match.group(1)) * _UNITS[match.group(2)]
    problems.append(f"{where}: {key!r} must be a positive duration like 500ms, 30s, 10m, 1h, 3d")
    return DEFAULT_TIMEOUT_MS


def _count(value: Any, where: str, key: str, problems: list[str], minimum: int) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= minimum:
        return value
    problems.append(f"{where}: {key!r} must be an integer >= {minimum}")
    return minimum


def _enum(value: Any, enum: type[Authority], where: str, key: str, problems: list[str]) -> Any:
    try:
        return enum(value)
    except ValueError:
        allowed = ", ".join(member.value for member in enum)
        problems.append(f"{where}: {key!r} is {value!r}; use one of {allowed}")
        return None


def _backoff(value: Any, where: str, problems: list[str]) -> Backoff:
    if value is None:
        return DEFAULT_BACKOFF
    if not isinstance(value, Mapping):
        problems.append(f"{where}: 'backoff' must be a mapping with base, max, jitter")
        return DEFAULT_BACKOFF
    base = _duration(value.get("base", DEFAULT_BACKOFF.base_ms), where, "backoff.base", problems)
    most = _duration(value.get("max", DEFAULT_BACKOFF.max_ms), where, "backoff.max", problems)
    jitter = value.get("jitter", DEFAULT_BACKOFF.jitter)
    if not isinstance(jitter, int | float) or isinstance(jitter, bool) or not 0 <= jitter <= 1:
        problems.append(f"{where}: 'backoff.jitter' must be a number between 0 and 1")
        jitter = DEFAULT_BACKOFF.jitter
    if most < base:
        problems.append(f"{where}: 'backoff.max' must not be below 'backoff.base'")
    return Backoff(base_ms=base, max_ms=most, jitter=float(jitter))


def _outputs(value: Any, where: str, problems: list[str]) -> Outputs:
    if value is None:
        return Outputs()
    if not isinstance(value, Mapping) or set(value) - {"paths", "resources", "environments"}:
        problems.append(f"{where}: 'outputs' must map paths/resources/environments to lists")
        return Outputs()
    return Outputs(
        paths=_strings(value.get("paths", ()), where, "outputs.paths", problems),
        resources=_strings(value.get("resources", ()), where, "outputs.resources", problems),
        environments=_strings(
            value.get("environments", ()), where, "outputs.environments", problems
        ),
    )
