"""Policy bundles: a directory of .rego files plus data.json, validated and digested at load.

A bundle is loaded once, checked completely (every file parses, the whole compiles, no
construct that crashes rego-cpp), and identified by its digest: sha256 over the sorted
relative paths and bytes of every .rego and .json file. Decisions name the digest, so a
decision can always be traced to the exact policy text that made it.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdlcflow.errors import SdlcflowError
from sdlcflow.policy import _rego

POLICY_PACKAGE_PREFIX = "sdlcflow.policies."
DATA_FILE = "data.json"

_PACKAGE = re.compile(r"^\s*package\s+([A-Za-z_][\w.]*)", re.MULTILINE)
_TEST_RULE = re.compile(r"^(test_\w+)\s*(?:if\b|\{|:=|=|contains\b)", re.MULTILINE)
_INPUT_REF = re.compile(r"\binput((?:\.[A-Za-z_]\w*)+)")
_WITH_WHOLE_INPUT = re.compile(r"\bwith\s+input\s+as\b")


class PolicyLoadError(SdlcflowError):
    """A bundle could not be loaded; the message lists every problem as file:line:col."""

    def __init__(self, root: str, problems: list[str]) -> None:
        listing = "\n  ".join(problems)
        super().__init__(f"policy bundle {root} has {len(problems)} problem(s):\n  {listing}")
        self.problems = problems


@dataclass(frozen=True)
class RegoModule:
    """One .rego file: its package, whether it holds tests, and what input paths it reads."""

    path: str
    source: str
    package: str
    is_test: bool
    test_rules: tuple[str, ...]
    input_paths: tuple[str, ...]

    @property
    def policy_name(self) -> str | None:
        """`deps.sensitive` for `package sdlcflow.policies.deps.sensitive`; None otherwise."""
        if self.is_test or not self.package.startswith(POLICY_PACKAGE_PREFIX):
            return None
        return self.package[len(POLICY_PACKAGE_PREFIX) :]


@dataclass(frozen=True)
class PolicyBundle:
    """Validated Rego modules and data with their digest; immutable once loaded."""

    root: str
    modules: tuple[RegoModule, ...]
    data: Mapping[str, Any]
    digest: str
    policies: tuple[str, ...] = field(default=())

    @classmethod
    def load(cls, root: Path) -> PolicyBundle:
        """Read and validate a bundle directory; raise PolicyLoadError listing every problem."""
        if not root.is_dir():
            raise PolicyLoadError(str(root), [f"{root} is not a directory of .rego files"])
        files = {
            path.relative_to(root).as_posix(): path.read_bytes()
            for path in sorted(root.rglob("*"))
            if path.is_file() and path.suffix in (".rego", ".json")
        }
        return cls.from_files(files, root=str(root))

    @classmethod
    def from_files(cls, files: Mapping[str, bytes], *, root: str = "<memory>") -> PolicyBundle:
        """Build a bundle from relative path -> bytes (used by load and by tests)."""
        problems: list[str] = []
        modules = [_module(path, raw, problems) for path, raw in sorted(files.items())]
        valid = [m for m in modules if m is not None]
        data = _data(files, problems)
        if not any(m.policy_name for m in valid) and not problems:
            problems.append(f"no policy module: a package must start with {POLICY_PACKAGE_PREFIX}")
        if not problems:
            problems.extend(_compile_problems(valid, data))
        if problems:
            raise PolicyLoadError(root, problems)
        policies = tuple(sorted({m.policy_name for m in valid if m.policy_name}))
        return cls(root, tuple(valid), data, bundle_digest(files), policies)

    @property
    def policy_modules(self) -> tuple[RegoModule, ...]:
        return tuple(m for m in self.modules if not m.is_test)

    @property
    def test_modules(self) -> tuple[RegoModule, ...]:
        return tuple(m for m in self.modules if m.is_test)

    def input_paths_of(self, policy: str) -> tuple[str, ...]:
        """Input paths a policy's modules mention (static, for evidence when rules don't say)."""
        paths = {p for m in self.policy_modules if m.policy_name == policy for p in m.input_paths}
        return tuple(sorted(paths))

    def sources(self) -> dict[str, str]:
        return {m.path: m.source for m in self.modules}


def bundle_digest(files: Mapping[str, bytes]) -> str:
    """sha256 over each file's relative path and bytes, in path order, length-prefixed."""
    hasher = hashlib.sha256()
    for path in sorted(files):
        if not path.endswith((".rego", ".json")):
            continue
        name, body = path.encode("utf-8"), files[path]
        hasher.update(len(name).to_bytes(8, "big") + name + len(body).to_bytes(8, "big") + body)
    return "sha256:" + hasher.hexdigest()


def _module(path: str, raw: bytes, problems: list[str]) -> RegoModule | None:
    if not path.endswith(".rego"):
        return None
    try:
        source = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        problems.append(f"{path}: not UTF-8 ({exc.reason} at byte {exc.start})")
        return None
    package = _PACKAGE.search(source)
    if package is None:
        problems.append(f"{path}:1:1: no `package` declaration")
        return None
    guard = _WITH_WHOLE_INPUT.search(source)
    if guard is not None:
        line = source.count("\n", 0, guard.start()) + 1
        problems.append(
            f"{path}:{line}: `with input as {{...}}` crashes rego-cpp 1.5 when a rule then "
            'calls a built-in; override fields one by one: `with input.head_sha as "abc"`'
        )
        return None
    try:
        _rego.add_module(_rego.new_interpreter(), path, source)
    except _rego.RegoFailure as exc:
        problems.extend(str(p) for p in exc.problems)
        return None
    is_test = path.endswith("_test.rego") or package.group(1).endswith("_test")
    return RegoModule(
        path=path,
        source=source,
        package=package.group(1),
        is_test=is_test,
        test_rules=tuple(dict.fromkeys(_TEST_RULE.findall(source))) if is_test else (),
        input_paths=tuple(sorted({"input" + m for m in _INPUT_REF.findall(source)})),
    )


def _data(files: Mapping[str, bytes], problems: list[str]) -> dict[str, Any]:
    raw = files.get(DATA_FILE)
    if raw is None:
        return {}
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        problems.append(f"{DATA_FILE}: not valid JSON: {exc}")
        return {}
    if not isinstance(data, dict):
        problems.append(f"{DATA_FILE}: must hold a JSON object (it becomes `data`)")
        return {}
    return data


def _compile_problems(modules: list[RegoModule], data: Mapping[str, Any]) -> list[str]:
    """Compile everything together, then probe each policy with an empty input.

    rego-cpp resolves some names (functions, imports) only when a rule is evaluated, so the
    probe is what catches a call to a function that does not exist.
    """
    interpreter = _rego.new_interpreter()
    sources = {m.path: m.source for m in modules}
    policies = sorted({m.package for m in modules if not m.is_test})
    try:
        for module in modules:
            _rego.add_module(interpreter, module.path, module.source)
        interpreter.add_data_json(json.dumps(data))
        compiled = _rego.build(interpreter, None, [entrypoint(p) for p in policies], sources)
    except _rego.RegoFailure as exc:
        return [str(p) for p in exc.problems]
    runner = _rego.new_interpreter()
    _rego.set_input(runner, b"{}")
    problems = []
    for package in policies:
        try:
            _rego.query_bundle(runner, compiled, entrypoint(package))
        except _rego.RegoFailure as exc:
            files = ", ".join(m.path for m in modules if m.package == package)
            problems.append(f"{files}: package {package} fails on an empty input: {exc}")
    return problems


def entrypoint(package: str) -> str:
    """rego-cpp's entrypoint name for a package: dots become slashes."""
    return package.replace(".", "/")
