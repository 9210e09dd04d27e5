"""The `when:` language of pipeline templates: a safe subset of Python expressions.

Templates come from repositories, so conditions are untrusted text. They are parsed with
`ast` and compiled into closures over an allow-list of node types (boolean operators,
comparisons, names, literals, attribute and subscript lookup, three pure functions); anything
else is refused at template load time. Nothing is ever passed to `eval`.

Examples: `steps.policy.decision == "REVIEW"`, `kind == "dependency" and "major" in labels`,
`any_match(paths, "deploy/*")`.
"""

from __future__ import annotations

import ast
import fnmatch
import operator
import warnings
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache
from typing import Any

from sdlcflow.errors import SdlcflowError

# The names a condition may read; `steps` maps step id -> {"status": ..., "decision": ...}.
CONTEXT_NAMES: frozenset[str] = frozenset(
    {"kind", "paths", "labels", "resources", "environments", "steps"}
)

Context = Mapping[str, Any]
Compiled = Callable[[Context], Any]


class ExpressionError(SdlcflowError):
    """A `when:` condition is not valid in the template language."""


def _any_match(values: Any, pattern: Any) -> bool:
    return any(fnmatch.fnmatchcase(str(v), str(pattern)) for v in _iter(values))


def _all_match(values: Any, pattern: Any) -> bool:
    return all(fnmatch.fnmatchcase(str(v), str(pattern)) for v in _iter(values))


def _len(values: Any) -> int:
    return len(_iter(values))


def _iter(values: Any) -> tuple[Any, ...]:
    if values is None:
        return ()
    if isinstance(values, str):
        return (values,)
    if isinstance(values, Iterable):
        return tuple(values)
    return (values,)


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "any_match": _any_match,
    "all_match": _all_match,
    "len": _len,
}

_LITERAL_NAMES: dict[str, Any] = {"true": True, "false": False, "null": None}

_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], bool]] = {
    ast.Eq: lambda a, b: bool(a == b),
    ast.NotEq: lambda a, b: bool(a != b),
    ast.Lt: lambda a, b: _ordered(a, b, operator.lt),
    ast.LtE: lambda a, b: _ordered(a, b, operator.le),
    ast.Gt: lambda a, b: _ordered(a, b, operator.gt),
    ast.GtE: lambda a, b: _ordered(a, b, operator.ge),
    ast.In: lambda a, b: a in _iter(b),
    ast.NotIn: lambda a, b: a not in _iter(b),
}


def _ordered(a: Any, b: Any, op: Callable[[Any, Any], bool]) -> bool:
    """Order comparisons are false (not an error) when either side is missing or mismatched."""
    try:
        return bool(op(a, b))
    except TypeError:
        return False


def _lookup(value: Any, key: Any) -> Any:
    if isinstance(value, Mapping):
        return value.get(key)
    if isinstance(value, tuple | list) and isinstance(key, int) and -len(value) <= key < len(value):
        return value[key]
    return None


@lru_cache(maxsize=4096)
def compile_condition(text: str) -> Compiled:
    """Compile a condition once; the result is a pure function of the evaluation context."""
    source = text.strip()
    if not source:
        return lambda _ctx: True
    try:
        tree = _parse(source)
    except SyntaxError as exc:
        raise ExpressionError(f"cannot parse {text!r}: {exc.msg} (column {exc.offset})") from exc
    return _compile(tree.body, source)


def evaluate(text: str, context: Context) -> bool:
    """Evaluate a condition to a boolean; missing facts read as null, never raise."""
    return bool(compile_condition(text)(context))


def step_references(text: str) -> tuple[str, ...]:
    """The step ids a condition reads through `steps.<id>` or `steps["<id>"]`, in order."""
    source = text.strip()
    if not source:
        return ()
    compile_condition(source)
    found: list[str] = []
    for node in ast.walk(_parse(source)):
        step = _referenced_step(node)
        if step is not None and step not in found:
            found.append(step)
    return tuple(found)


def _parse(source: str) -> ast.Expression:
    with warnings.catch_warnings():
        # "1is 1" and friends warn while parsing; the condition is refused or evaluated on
        # our terms anyway, so the warning would only be noise in the shell's logs
        warnings.simplefilter("ignore")
        return ast.parse(source, mode="eval")


def _referenced_step(node: ast.AST) -> str | None:
    if isinstance(node, ast.Attribute) and _is_steps(node.value):
        return node.attr
    if (
        isinstance(node, ast.Subscript)
        and _is_steps(node.value)
        and isinstance(node.slice, ast.Constant)
        and isinstance(node.slice.value, str)
    ):
        return node.slice.value
    return None


def _is_steps(node: ast.AST) -> bool:
    return isinstance(node, ast.Name) and node.id == "steps"


def _compile(node: ast.AST, source: str) -> Compiled:
    if isinstance(node, ast.BoolOp):
        return _compile_boolop(node, source)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        operand = _compile(node.operand, source)
        return lambda ctx: not operand(ctx)
    if isinstance(node, ast.Compare):
        return _compile_compare(node, source)
    if isinstance(node, ast.Constant) and isinstance(node.value, str | int | float | bool | None):
        value = node.value
        return lambda _ctx: value
    if isinstance(node, ast.Name):
        return _compile_name(node, source)
    if isinstance(node, ast.Attribute):
        return _compile_lookup(node.value, node.attr, source)
    if isinstance(node, ast.Subscript):
        if not isinstance(node.slice, ast.Constant):
            raise ExpressionError(f"in {source!r}: subscripts must be literal keys")
        return _compile_lookup(node.value, node.slice.value, source)
    if isinstance(node, ast.Tuple | ast.List):
        items = tuple(_compile(item, source) for item in node.elts)
        return lambda ctx: tuple(item(ctx) for item in items)
    if isinstance(node, ast.Call):
        return _compile_call(node, source)
    raise ExpressionError(
        f"in {source!r}: {type(node).__name__} is not allowed; use comparisons, and/or/not, "
        f"names ({', '.join(sorted(CONTEXT_NAMES))}), literals, a.b, a['b'] and "
        f"{', '.join(sorted(FUNCTIONS))}()"
    )


def _compile_boolop(node: ast.BoolOp, source: str) -> Compiled:
    parts = tuple(_compile(value, source) for value in node.values)
    if isinstance(node.op, ast.And):
        return lambda ctx: all(part(ctx) for part in parts)
    return lambda ctx: any(part(ctx) for part in parts)


def _compile_compare(node: ast.Compare, source: str) -> Compiled:
    left = _compile(node.left, source)
    ops = tuple(_COMPARE[type(op)] for op in node.ops if type(op) in _COMPARE)
    if len(ops) != len(node.ops):
        raise ExpressionError(f"in {source!r}: only ==, !=, <, <=, >, >=, in, not in compare")
    rights = tuple(_compile(value, source) for value in node.comparators)

    def compare(ctx: Context) -> bool:
        current = left(ctx)
        for op, right in zip(ops, rights, strict=True):
            following = right(ctx)
            if not op(current, following):
                return False
            current = following
        return True

    return compare


def _compile_name(node: ast.Name, source: str) -> Compiled:
    name = node.id
    if name in _LITERAL_NAMES:
        literal = _LITERAL_NAMES[name]
        return lambda _ctx: literal
    if name not in CONTEXT_NAMES:
        raise ExpressionError(
            f"in {source!r}: unknown name {name!r}; known names are "
            f"{', '.join(sorted(CONTEXT_NAMES))}"
        )
    return lambda ctx: ctx.get(name)


def _compile_lookup(value_node: ast.AST, key: Any, source: str) -> Compiled:
    value = _compile(value_node, source)
    return lambda ctx: _lookup(value(ctx), key)


def _compile_call(node: ast.Call, source: str) -> Compiled:
    if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS or node.keywords:
        raise ExpressionError(
            f"in {source!r}: only {', '.join(sorted(FUNCTIONS))}() may be called, "
            "with positional arguments"
        )
    function = FUNCTIONS[node.func.id]
    args = tuple(_compile(arg, source) for arg in node.args)
    expected = 1 if node.func.id == "len" else 2
    if len(args) != expected:
        raise ExpressionError(f"in {source!r}: {node.func.id}() takes {expected} argument(s)")
    return lambda ctx: function(*(arg(ctx) for arg in args))
