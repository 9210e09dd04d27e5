"""Server config files shipped as package data, filled in with `$name` placeholders."""

from __future__ import annotations

from importlib import resources
from string import Template


def render(name: str, **values: object) -> str:
    """The package-data file `name` with every `$placeholder` replaced (a missing one is a bug)."""
    text = (resources.files("sdlcflow.infra") / name).read_text()
    return Template(text).substitute({key: str(value) for key, value in values.items()})
