"""The only module that talks to regopy: interpreters, compiled bundles, inputs and errors.

rego-cpp reports errors as trees of nodes with a file name and byte offset; this module turns
them into `file:line:col: message` problems. It also switches the library's own printing off
(errors are returned, not printed) and turns on strict built-in errors, so a built-in that
fails makes the evaluation fail (and the policy REVIEW) instead of quietly being undefined.
"""

from __future__ import annotations

import ctypes
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import regopy
from regopy import rego_shared

regopy.set_default_log_level("None")

_ERROR, _ERROR_MESSAGE, _ERROR_CODE = 1800, 1801, 1803
_LOCATED = re.compile(r"\(error\s+\d+:(?P<file>[^|\s]*)\|(?P<offset>\d+)\|\d+")
_MESSAGE = re.compile(r"\(errormsg (?P<length>\d+):")

_lib = rego_shared.rego


@dataclass(frozen=True)
class RegoProblem:
    """One compile or evaluation error, located in a source file when rego-cpp says where."""

    message: str
    file: str = ""
    line: int = 0
    column: int = 0

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}: " if self.file else ""
        return f"{where}{self.message}"


class RegoFailure(Exception):
    """rego-cpp refused a module or a query; `problems` says where and why."""

    def __init__(self, problems: Sequence[RegoProblem]) -> None:
        super().__init__("; ".join(str(p) for p in problems))
        self.problems = tuple(problems)


def new_interpreter() -> regopy.Interpreter:
    interpreter = regopy.Interpreter()
    interpreter.strict_built_in_errors = True
    interpreter.log_level = regopy.LogLevel.NONE
    return interpreter


def problems_from_error(text: str, sources: Mapping[str, str]) -> list[RegoProblem]:
    """Parse rego-cpp's error s-expression into located problems (best effort)."""
    problems: list[RegoProblem] = []
    for block in re.split(r"\(error\b", text)[1:]:
        located = _LOCATED.match("(error" + block)
        message = _length_prefixed(block, _MESSAGE) or block.strip().splitlines()[0]
        file, line, column = "", 0, 0
        if located:
            file = located.group("file")
            line, column = _line_column(sources.get(file, ""), int(located.group("offset")))
        problems.append(RegoProblem(message=message, file=file, line=line, column=column))
    return problems or [RegoProblem(message=text.strip() or "rego-cpp reported an error")]


def _length_prefixed(text: str, pattern: re.Pattern[str]) -> str | None:
    found = pattern.search(text)
    if not found:
        return None
    start = found.end()
    return text[start : start + int(found.group("length"))]


def _line_column(source: str, byte_offset: int) -> tuple[int, int]:
    before = source.encode("utf-8")[:byte_offset].decode("utf-8", "replace")
    line = before.count("\n") + 1
    return line, len(before) - (before.rfind("\n") + 1) + 1


def add_module(interpreter: regopy.Interpreter, name: str, source: str) -> None:
    """Add one module; raise RegoFailure with file:line:col if it does not parse."""
    try:
        interpreter.add_module(name, source)
    except regopy.RegoError as exc:
        raise RegoFailure(problems_from_error(str(exc), {name: source})) from None


def build(
    interpreter: regopy.Interpreter,
    query: str | None,
    entrypoints: Sequence[str],
    sources: Mapping[str, str],
) -> regopy.Bundle:
    """Compile the interpreter's modules and data into a bundle with plans for the queries."""
    try:
        bundle = interpreter.build(query, list(entrypoints))
    except regopy.RegoError as exc:
        raise RegoFailure(problems_from_error(str(exc), sources)) from None
    if not bundle.ok():
        raise RegoFailure([RegoProblem(message="rego-cpp could not compile the bundle")])
    return bundle


def set_input(interpreter: regopy.Interpreter, document: Mapping[str, Any] | bytes) -> None:
    """Hand the input to the interpreter.

    Measured (benchmarks/policy_bench.py): building the term value by value through regopy's
    Input is ~1.5x faster than letting rego-cpp parse the JSON text (regoSetInputJSON, which
    runs its whole parser pipeline), so plain values go through Input; bytes are parsed first.
    """
    value = json.loads(document) if isinstance(document, bytes) else document
    interpreter.set_input(regopy.Input(value))


UNDEFINED: Any = object()


def query(interpreter: regopy.Interpreter, text: str) -> Any:
    """Evaluate a query against the interpreter's modules (slow path: compiles every call)."""
    return _value(rego_shared.rego_query(interpreter._impl, text))


def query_bundle(
    interpreter: regopy.Interpreter, bundle: regopy.Bundle, entrypoint: str | None = None
) -> Any:
    """Run a compiled bundle's query, or one of its entrypoints, on the current input."""
    if entrypoint is None:
        output = rego_shared.rego_bundle_query(interpreter._impl, bundle._impl)
    else:
        output = rego_shared.rego_bundle_query_entrypoint(
            interpreter._impl, bundle._impl, entrypoint
        )
    return _value(output)


def _value(output: int) -> Any:
    """The result's value: binding `x` if bound, else the first expression.

    Returns UNDEFINED when there is no result; raises RegoFailure with the error messages
    when evaluation failed (rego-cpp sometimes reports an error inside an "ok" output).
    """
    try:
        ok = rego_shared.rego_output_ok(output)
        text = rego_shared.rego_output_string(output)
        if not ok:
            raise RegoFailure(_output_problems(output))
    finally:
        rego_shared.rego_free_output(output)
    if text.lstrip().startswith("(error"):
        raise RegoFailure(problems_from_error(text, {}))
    if text == "undefined":
        return UNDEFINED
    parsed = json.loads(text)
    first = parsed[0] if isinstance(parsed, list) else parsed
    if not first:
        return UNDEFINED
    bindings = first.get("bindings") or {}
    if "x" in bindings:
        return bindings["x"]
    expressions = first.get("expressions") or []
    return expressions[0] if expressions else UNDEFINED


def _output_problems(output: int) -> list[RegoProblem]:
    messages: list[str] = []
    codes: list[str] = []
    _collect(_lib.regoOutputNode(output), messages, codes)
    if not messages:
        return [RegoProblem(message="evaluation failed; rego-cpp gave no message")]
    texts = [
        f"{msg} ({code})" if code else msg
        for msg, code in zip(messages, codes + [""] * len(messages), strict=False)
    ]
    return [RegoProblem(message=text) for text in dict.fromkeys(texts)]


_lib.regoOutputNode.restype = ctypes.c_void_p
_lib.regoOutputNode.argtypes = [ctypes.c_void_p]


def _collect(node: int | None, messages: list[str], codes: list[str], depth: int = 0) -> None:
    if not node or depth > 6:
        return
    kind = _lib.regoNodeType(node)
    if kind == _ERROR_MESSAGE:
        messages.append(rego_shared.rego_node_value(node))
        return
    if kind == _ERROR_CODE:
        codes.append(rego_shared.rego_node_value(node))
        return
    for index in range(rego_shared.rego_node_size(node)):
        _collect(rego_shared.rego_node_get(node, index), messages, codes, depth + 1)
