"""Which pipeline templates a deployment knows: the packaged ones plus a team's own directory.

A coordinator plans a change request by its template's name, so every worker of one app id
must read the same directory (`SDLCFLOW_TEMPLATES_DIR`, or `sdlcflow run processors
--templates`); `sdlcflow submit` reads it too, to refuse a name no coordinator would know before
the request reaches the log. A directory template replaces the packaged one of the same name,
so a team can tighten `code-change` without forking the package. A change keeps the digest of
the template it was planned with, so a template edited later affects new changes only.
"""

from __future__ import annotations

import os
from pathlib import Path

from sdlcflow.core.planner import Template, load_templates, packaged_template_texts
from sdlcflow.errors import SdlcflowError

TEMPLATES_DIR_ENV = "SDLCFLOW_TEMPLATES_DIR"
DEFAULT_PIPELINE = "code-change"
SUFFIXES = (".yaml", ".yml")


class PipelineError(SdlcflowError):
    """The templates directory cannot be read, or a pipeline names no known template."""


def configured_directory() -> Path | None:
    """The directory `SDLCFLOW_TEMPLATES_DIR` names, or None when it is unset or empty."""
    value = os.environ.get(TEMPLATES_DIR_ENV, "").strip()
    return Path(value) if value else None


def template_texts(directory: Path | None) -> dict[str, tuple[str, str]]:
    """Name -> (source, text) of the packaged templates, then of `directory`'s `*.yaml` and
    `*.yml` files (named by their stem), which win over packaged ones of the same name."""
    texts = packaged_template_texts()
    if directory is None:
        return texts
    if not directory.is_dir():
        raise PipelineError(
            f"templates directory {directory} does not exist or is not a directory: create it, "
            f"or unset {TEMPLATES_DIR_ENV} to use only the packaged templates"
        )
    for path in sorted(directory.iterdir()):
        if path.suffix in SUFFIXES and path.is_file():
            texts[path.stem] = (str(path), path.read_text(encoding="utf-8"))
    return texts


def known_templates(directory: Path | None) -> dict[str, Template]:
    """Every template a coordinator reading `directory` plans with, parsed and checked."""
    return load_templates(template_texts(directory))


def check_pipeline(name: str, directory: Path | None) -> str:
    """`name` when a coordinator reading `directory` knows it; otherwise an error listing the
    names it does know and where to put a new template."""
    known = known_templates(directory)
    if name in known:
        return name
    where = (
        f"the packaged templates or {directory}"
        if directory
        else f"the packaged templates ({TEMPLATES_DIR_ENV} is unset)"
    )
    raise PipelineError(
        f"no pipeline template named {name!r} in {where}; known: {', '.join(sorted(known))}. "
        f"Add {name}.yaml to a directory that {TEMPLATES_DIR_ENV} names, here and for the "
        "coordinator's workers"
    )
