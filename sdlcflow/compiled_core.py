"""Which sdlcflow.core runs: the modules `make install` compiles with mypyc, or their sources.

tools/compile_core.py compiles COMPILED_MODULES into extension modules (1.2-1.3x the pure
core's throughput), and C_MODULES from their C sources, in BUILD, beside a record of the sha256
of every source they were built from.
BUILD is not on any import path: importing this module, which `sdlcflow.core` does first, runs
`guard()`, which puts a finder first on `sys.meta_path` serving the compiled modules from BUILD
when the record matches the sources, and from their sources otherwise (or with
SDLCFLOW_PURE_CORE=1). So a source edited after the build is never shadowed by its stale
extension, and a checkout of a revision without this guard never sees the extensions at all.
All or nothing: compiled modules call each other directly, so one stale module means none is used.

It reads the environment and the file system, which the core itself must not (its purity
test), so it lives outside sdlcflow.core; it is never compiled.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import json
import os
import sys
import warnings
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType

PACKAGE = "sdlcflow.core"
COMPILED_MODULES = ("decider", "expr", "fold", "planner", "records")
# extensions written in C (<name>.c), built with the compiled modules and used only with them
C_MODULES = ("_records",)
# every module the build makes an extension of: all of them load, or none
EXTENSION_MODULES = (*COMPILED_MODULES, *C_MODULES)
# compiled code bakes in what it knew of the modules it imports (types, signatures), so these
# sources are part of the build too
BUILT_FROM = (*EXTENSION_MODULES, "codec", "events", "state")
# mypyc's group, and the shared library named after it that each compiled module's shim imports
GROUP = f"{PACKAGE}._core"
GROUP_LIBRARY = GROUP.rpartition(".")[2] + "__mypyc"
PURE_ENV = "SDLCFLOW_PURE_CORE"
HERE = Path(__file__).resolve().parent / "core"
BUILD = HERE / "_compiled"
RECORD = BUILD / "record.json"


@dataclass(frozen=True)
class Choice:
    """Whether the compiled modules may load, and the warning to give when they are stale."""

    compiled: bool
    warning: str = ""


def choose(
    extensions: Collection[str],
    sources: Mapping[str, str],
    record: Mapping[str, str] | None,
    pure_requested: bool,
) -> Choice:
    """Compiled only when every compiled module has an extension and every source the build
    read still has the digest the record gives it. `extensions` names the modules with one,
    `sources` maps each of BUILT_FROM to its source's sha256, `record` is the build's."""
    if pure_requested or not extensions:
        return Choice(compiled=False)
    missing = [name for name in EXTENSION_MODULES if name not in extensions]
    if missing:
        return _stale(f"the compiled core is incomplete (no {missing[0]} extension)")
    if record is None:
        return _stale("the compiled core has no build record")
    for name in BUILT_FROM:
        if record.get(name) != sources.get(name):
            return _stale(f"the compiled core is older than {source_name(name)}")
    return Choice(compiled=True)


def _stale(why: str) -> Choice:
    return Choice(
        compiled=False,
        warning=f"sdlcflow.core: {why}; running the pure-Python core (make install rebuilds it)",
    )


def guard() -> None:
    """Serve the compiled modules from BUILD when `choose` allows it, else from their sources."""
    extensions = _extensions()
    pure_requested = os.environ.get(PURE_ENV) == "1"
    fresh = not pure_requested and bool(extensions)
    choice = choose(
        extensions,
        source_digests() if fresh else {},
        _read_record() if fresh else None,
        pure_requested,
    )
    if choice.warning:
        warnings.warn(choice.warning, RuntimeWarning, stacklevel=1)
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _CoreFinder)]
    sys.meta_path.insert(0, _CoreFinder(_extension_paths() if choice.compiled else {}))


def running_compiled() -> bool:
    """Whether the imported compiled modules are the extensions (call after importing them)."""
    modules = (sys.modules.get(f"{PACKAGE}.{name}") for name in EXTENSION_MODULES)
    return all(module is not None and _is_extension(module) for module in modules)


def source_digests(directory: Path = HERE) -> dict[str, str]:
    """The sha256 of each source a build reads, by module name."""
    return {
        name: hashlib.sha256((directory / source_name(name)).read_bytes()).hexdigest()
        for name in BUILT_FROM
    }


def source_name(module: str) -> str:
    """The file a module of BUILT_FROM is built from."""
    return f"{module}.c" if module in C_MODULES else f"{module}.py"


def _extension_paths() -> dict[str, Path]:
    """The extension in BUILD of each compiled module and of mypyc's library, by module name."""
    try:
        names = os.listdir(BUILD)
    except OSError:
        return {}
    suffixes = importlib.machinery.EXTENSION_SUFFIXES
    return {
        module: BUILD / (module + suffix)
        for module in (*EXTENSION_MODULES, GROUP_LIBRARY)
        for suffix in suffixes
        if module + suffix in names
    }


def _extensions() -> set[str]:
    return set(_extension_paths()) & set(EXTENSION_MODULES)


def _read_record() -> dict[str, str] | None:
    try:
        built_from = json.loads(RECORD.read_text())["built_from"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return built_from if isinstance(built_from, dict) else None


def _is_extension(module: ModuleType) -> bool:
    return isinstance(getattr(module, "__loader__", None), importlib.machinery.ExtensionFileLoader)


class _CoreFinder:
    """A `sys.meta_path` finder for exactly the compiled modules, the C ones and mypyc's
    library: from the extensions it is given, else the compiled modules from their sources (a
    C module is then not found, and its caller runs without it). It also keeps extensions an
    older layout left next to the sources from shadowing them."""

    def __init__(self, extensions: Mapping[str, Path]) -> None:
        self.extensions = dict(extensions)

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        package, _, name = fullname.rpartition(".")
        if package != PACKAGE:
            return None
        if name in self.extensions:
            loader = importlib.machinery.ExtensionFileLoader(fullname, str(self.extensions[name]))
            return importlib.util.spec_from_file_location(
                fullname, self.extensions[name], loader=loader
            )
        if name in COMPILED_MODULES:
            return importlib.util.spec_from_file_location(fullname, HERE / f"{name}.py")
        return None


guard()
