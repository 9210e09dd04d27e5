"""The compiled core runs only when built from the sources as they are (sdlcflow.compiled_core)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

import pytest

import sdlcflow.core
from sdlcflow.compiled_core import (
    BUILD,
    BUILT_FROM,
    COMPILED_MODULES,
    EXTENSION_MODULES,
    PURE_ENV,
    RECORD,
    Choice,
    choose,
    source_digests,
)

ROOT = Path(__file__).resolve().parents[3]
CORE = ROOT / "sdlcflow" / "core"
SOURCES = {name: f"sha-{name}" for name in BUILT_FROM}
ALL_BUILT = set(EXTENSION_MODULES)


def test_a_build_of_the_current_sources_runs_compiled() -> None:
    assert choose(ALL_BUILT, SOURCES, dict(SOURCES), pure_requested=False) == Choice(True)


def test_a_compiled_module_edited_after_the_build_runs_the_pure_core_and_says_which() -> None:
    choice = choose(ALL_BUILT, {**SOURCES, "decider": "edited"}, SOURCES, pure_requested=False)
    assert not choice.compiled
    assert choice.warning == (
        "sdlcflow.core: the compiled core is older than decider.py; "
        "running the pure-Python core (make install rebuilds it)"
    )


def test_a_module_the_compiled_ones_import_edited_after_the_build_runs_the_pure_core() -> None:
    choice = choose(ALL_BUILT, {**SOURCES, "events": "edited"}, SOURCES, pure_requested=False)
    assert not choice.compiled
    assert "older than events.py" in choice.warning


def test_a_build_without_its_record_runs_the_pure_core() -> None:
    choice = choose(ALL_BUILT, SOURCES, None, pure_requested=False)
    assert not choice.compiled
    assert "no build record" in choice.warning


def test_a_build_missing_one_module_runs_none_of_them() -> None:
    choice = choose(ALL_BUILT - {"fold"}, SOURCES, SOURCES, pure_requested=False)
    assert not choice.compiled
    assert "no fold extension" in choice.warning


def test_sdlcflow_pure_core_runs_the_pure_core_without_a_warning() -> None:
    assert choose(ALL_BUILT, SOURCES, SOURCES, pure_requested=True) == Choice(False)


def test_no_build_runs_the_pure_core_without_a_warning() -> None:
    assert choose(set(), SOURCES, None, pure_requested=False) == Choice(False)


def test_compiled_says_where_every_compiled_module_was_loaded_from() -> None:
    for name in COMPILED_MODULES:
        module_file = sys.modules[f"sdlcflow.core.{name}"].__file__
        assert module_file is not None
        assert module_file.endswith(".py") is not sdlcflow.core.COMPILED, name


@pytest.mark.skipif(
    os.environ.get("CI") != "true" or os.environ.get(PURE_ENV) == "1",
    reason="CI (CI=true) must test the compiled core that make install builds",
)
def test_ci_runs_the_compiled_core() -> None:
    assert sdlcflow.core.COMPILED


def test_make_rebuilds_the_core_when_any_source_the_build_reads_changes() -> None:
    makefile = (ROOT / "Makefile").read_text()
    listed = re.search(
        r"^CORE_BUILT_FROM\s*:=\s*\$\(addprefix [^,]+,(.*?)\)$", makefile, re.M | re.S
    )
    assert listed is not None
    names = {Path(path).stem for path in listed.group(1).replace("\\", " ").split()}
    assert names == set(BUILT_FROM)


def _copy_of_the_built_core(into: Path) -> Path:
    if not RECORD.exists():
        pytest.skip("no compiled core here (make install builds it)")
    package = into / "sdlcflow"
    package.mkdir()
    for name in ("__init__.py", "errors.py", "compiled_core.py"):
        shutil.copy2(ROOT / "sdlcflow" / name, package / name)
    shutil.copytree(CORE, package / "core", ignore=shutil.ignore_patterns("__pycache__"))
    return package / "core"


def _import_core(
    root: Path,
    probe: str = "import sdlcflow.core as c, sdlcflow.core.decider as d; "
    "print(c.COMPILED, d.__file__)",
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != PURE_ENV}
    env["PYTHONPATH"] = str(root)
    return subprocess.run(
        [sys.executable, "-c", probe], cwd=root, env=env, capture_output=True, text=True, check=True
    )


def test_a_copy_of_the_built_core_loads_its_extensions(tmp_path: Path) -> None:
    core = _copy_of_the_built_core(tmp_path)
    result = _import_core(tmp_path)
    compiled, decider_file = result.stdout.split()
    assert compiled == "True"
    assert Path(decider_file).parent == core / BUILD.name
    assert any(decider_file.endswith(suffix) for suffix in EXTENSION_SUFFIXES)
    assert result.stderr == ""


def test_a_source_edited_after_the_build_loads_from_source_with_one_warning(tmp_path: Path) -> None:
    core = _copy_of_the_built_core(tmp_path)
    with (core / "decider.py").open("a") as source:
        source.write("# edited after the build\n")
    assert source_digests(core)["decider"] != source_digests(CORE)["decider"]
    result = _import_core(tmp_path)
    assert result.stdout.split() == ["False", str(core / "decider.py")]
    assert result.stderr.count("the compiled core is older than decider.py") == 1


def test_a_checkout_without_the_guard_never_imports_the_extensions(tmp_path: Path) -> None:
    core = _copy_of_the_built_core(tmp_path)
    (core / "__init__.py").write_text("")  # as in revisions before sdlcflow.compiled_core
    result = _import_core(tmp_path, "import sdlcflow.core.decider as d; print(d.__file__)")
    assert result.stdout.split() == [str(core / "decider.py")]


def test_extensions_an_earlier_build_left_next_to_the_sources_do_not_shadow_them(
    tmp_path: Path,
) -> None:
    core = _copy_of_the_built_core(tmp_path)
    for extension in (core / BUILD.name).iterdir():
        if extension.name != RECORD.name:
            extension.rename(core / extension.name)
    shutil.rmtree(core / BUILD.name)
    result = _import_core(tmp_path)
    assert result.stdout.split() == ["False", str(core / "decider.py")]
    assert result.stderr == ""
