"""The pure core of sdlcflow: events, the planner, the coordinator's state and its rules.

No Kafka, faust, Cassandra, clock or randomness in here (DESIGN.md, Functional core). The
shell loads a `RepoState` per repository, calls `handle(state, event, config)`, stores the new
state and publishes the returned decisions.

`make install` compiles the hot modules with mypyc; `COMPILED` says whether they run compiled
(sdlcflow.compiled_core decides, as the first import here).
"""

# first: importing it decides whether the compiled modules below load
from sdlcflow.compiled_core import running_compiled
from sdlcflow.core.decider import CoreConfig, decide, derive_id, gate_problem, handle
from sdlcflow.core.events import EVENT_TYPES, ActorScope, Envelope, Event, TaskContract
from sdlcflow.core.expr import ExpressionError
from sdlcflow.core.fold import evolve
from sdlcflow.core.planner import Template, TemplateError, load_templates, parse_template, plan
from sdlcflow.core.state import RepoState

COMPILED = running_compiled()

__all__ = [
    "COMPILED",
    "EVENT_TYPES",
    "ActorScope",
    "CoreConfig",
    "Envelope",
    "Event",
    "ExpressionError",
    "RepoState",
    "TaskContract",
    "Template",
    "TemplateError",
    "decide",
    "derive_id",
    "evolve",
    "gate_problem",
    "handle",
    "load_templates",
    "parse_template",
    "plan",
]
