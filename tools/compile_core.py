"""Compile the core's hot modules with mypyc into the directory sdlcflow.compiled_core serves.

`make install` runs this after the pip install (and again when a source it reads changes):
the compiled decider, fold (evolve), planner, expr and records run the core 1.2-1.3x faster with
the same decisions; `_records.c`, the records' constructor in C, is built with them. The
extensions and the build record (the sha256 of every source the build read, which
`sdlcflow.compiled_core` checks at import) land in sdlcflow/core/_compiled, gitignored and on no
import path: only the guard loads them.

The build runs in a scratch directory: setuptools 65 (the venv's) refuses the project's
`license = "Apache-2.0"` when setup() runs where pyproject.toml is, and the C sources and
objects stay out of the tree. mypy reads the project's [tool.mypy] settings.

    .venv/bin/python tools/compile_core.py [--keep-scratch]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORE = ROOT / "sdlcflow" / "core"

# the build itself must not load the extensions it is about to replace
os.environ["SDLCFLOW_PURE_CORE"] = "1"
sys.path.insert(0, str(ROOT))
from sdlcflow.compiled_core import (  # noqa: E402
    BUILD,
    C_MODULES,
    COMPILED_MODULES,
    EXTENSION_MODULES,
    GROUP,
    GROUP_LIBRARY,
    PACKAGE,
    PURE_ENV,
    RECORD,
    source_digests,
    source_name,
)


class BuildError(Exception):
    pass


def compile_into(scratch: Path) -> list[Path]:
    """Run mypyc and the C compiler in `scratch`; the extensions it built."""
    from mypyc.build import mypycify
    from setuptools import Extension, setup

    sources = [str(CORE / source_name(name)) for name in COMPILED_MODULES]
    os.chdir(scratch)
    (scratch / "sdlcflow" / "core").mkdir(parents=True)  # where --inplace puts them
    extensions = mypycify(
        [*sources, "--config-file", str(ROOT / "pyproject.toml")],
        opt_level="3",
        group_name=GROUP,
        target_dir=str(scratch / "build"),
    )
    extensions += [
        Extension(f"{PACKAGE}.{name}", [str(CORE / source_name(name))], extra_compile_args=["-O2"])
        for name in C_MODULES
    ]
    setup(
        name="sdlcflow-compiled-core",
        ext_modules=extensions,
        script_args=["build_ext", "--inplace", "--build-temp", str(scratch / "objects")],
    )
    built = [
        path
        for path in (scratch / "sdlcflow" / "core").iterdir()
        if any(path.name.endswith(suffix) for suffix in EXTENSION_SUFFIXES)
    ]
    names = {path.name.split(".", 1)[0] for path in built}
    expected = {*EXTENSION_MODULES, GROUP_LIBRARY}
    if names != expected:
        raise BuildError(f"mypyc built {sorted(names)}, expected {sorted(expected)}")
    return built


def install(built: list[Path], digests: dict[str, str]) -> None:
    """Stage the extensions and their record in a directory beside BUILD, then swap it in:
    between the two renames there is no BUILD and the guard runs the sources. A running
    process keeps the libraries it mapped."""
    staged = BUILD.with_name(f".{BUILD.name}.staged")
    shutil.rmtree(staged, ignore_errors=True)
    staged.mkdir()
    for path in built:
        shutil.copy2(path, staged / path.name)
    record = {"built_from": digests, "python": sys.version.split()[0], "mypy": _mypy_version()}
    (staged / RECORD.name).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    remove_build()
    os.replace(staged, BUILD)


def remove_build() -> None:
    """BUILD, and the extensions and record that earlier versions put next to the sources."""
    old = BUILD.with_name(f".{BUILD.name}.old")
    shutil.rmtree(old, ignore_errors=True)  # left by a build that was killed mid-swap
    if BUILD.exists():
        os.replace(BUILD, old)
    shutil.rmtree(old, ignore_errors=True)
    (CORE / "_compiled.json").unlink(missing_ok=True)
    for path in CORE.iterdir():
        if any(path.name.endswith(suffix) for suffix in EXTENSION_SUFFIXES):
            path.unlink()


def check_loads() -> None:
    """Import the installed core in a fresh interpreter: it must run compiled."""
    env = {k: v for k, v in os.environ.items() if k != PURE_ENV}
    probe = "import sdlcflow.core as core; raise SystemExit(0 if core.COMPILED else 3)"
    result = subprocess.run(
        [sys.executable, "-W", "error::RuntimeWarning", "-c", probe],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise BuildError(f"the installed compiled core does not load:\n{result.stderr}")


def _mypy_version() -> str:
    from mypy.version import __version__

    return str(__version__)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep-scratch", action="store_true", help="keep the C build directory")
    args = parser.parse_args()
    started = time.monotonic()
    digests = source_digests(CORE)
    scratch = Path(tempfile.mkdtemp(prefix="sdlcflow-core-build-"))
    try:
        built = compile_into(scratch)
        if source_digests(CORE) != digests:
            raise BuildError("a core source changed during the build; run it again")
        install(built, digests)
    finally:
        os.chdir(ROOT)
        if args.keep_scratch:
            print(f"scratch kept: {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    try:
        check_loads()
    except BuildError:
        remove_build()  # a record that make would trust, over a build that does not load
        raise
    modules = ", ".join(EXTENSION_MODULES)
    print(f"compiled sdlcflow.core ({modules}) in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    try:
        main()
    except BuildError as error:
        sys.exit(f"error: {error}")
